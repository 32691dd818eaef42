//! `conveyor dlq list`: finds the dead-letter queues through the management API, then reads
//! each (holding and releasing) for its oldest and newest failure.

use anyhow::Context;
use conveyor::Names;
use conveyor::dead_letter::DeadLetterQueue;
use serde::Deserialize;

use super::amqp;

#[derive(Debug, Deserialize)]
struct QueueInfo {
    name: String,
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Whether a URL names this machine.
fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(platform::is_loopback_host))
        .unwrap_or(false)
}

async fn dead_letter_queues(amqp_url: &str) -> anyhow::Result<Vec<String>> {
    let uri: lapin::uri::AMQPUri = amqp_url
        .parse()
        .map_err(|error: String| anyhow::anyhow!("AMQP_URL is not a valid AMQP URL: {error}"))?;
    let base = std::env::var("RABBITMQ_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned());
    let url = format!(
        "{base}/api/queues/{}?columns=name",
        percent_encode(&uri.vhost)
    );
    anyhow::ensure!(
        base.starts_with("http://"),
        "RABBITMQ_MANAGEMENT_URL={base:?}: only http:// is supported by this build; reach an \
         https-only API through a local tunnel (ssh -L 15672:localhost:15672 …)"
    );
    if !is_loopback(&base) {
        eprintln!(
            "warning: AMQP_URL's user and password go unencrypted to {base}; prefer a local \
             tunnel to the management API"
        );
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()?;
    let response = client
        .get(&url)
        .basic_auth(&uri.authority.userinfo.username, Some(&uri.authority.userinfo.password))
        .send()
        .await
        .with_context(|| format!("the RabbitMQ management API at {base} is unreachable: enable it (rabbitmq-plugins enable rabbitmq_management) or set RABBITMQ_MANAGEMENT_URL"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "the management API refused the queue listing ({}): check AMQP_URL's user has the monitoring tag",
        response.status()
    );
    let queues: Vec<QueueInfo> = response
        .json()
        .await
        .context("the management API answered with unexpected JSON")?;
    let mut names: Vec<String> = queues
        .into_iter()
        .filter_map(|queue| queue.name.strip_suffix(".dlq").map(str::to_owned))
        .filter(|service| !service.contains('.'))
        .collect();
    names.sort();
    Ok(names)
}

pub(crate) async fn run(json: bool) -> anyhow::Result<()> {
    let amqp = amqp();
    let first = amqp.urls().first().cloned().unwrap_or_default();
    let services = dead_letter_queues(&first).await?;
    let mut rows = Vec::with_capacity(services.len());
    for service in &services {
        let queue = DeadLetterQueue::open(&amqp, &Names::default(), service).await?;
        let letters = queue.hold_all().await;
        queue.release().await;
        let letters = letters?;
        let times = letters.iter().filter_map(|letter| letter.failed_at);
        let oldest = times.clone().min();
        let newest = times.max();
        rows.push(serde_json::json!({
            "service": service, "queue": format!("{service}.dlq"), "messages": letters.len(),
            "oldest_failure": oldest, "newest_failure": newest,
        }));
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("No dead-letter queues on this vhost.");
        return Ok(());
    }
    println!(
        "{:<24} {:>8}  {:<25}  {:<25}",
        "QUEUE", "MESSAGES", "OLDEST FAILURE", "NEWEST FAILURE"
    );
    for row in rows {
        let time = |key: &str| {
            row[key]
                .as_str()
                .map_or_else(|| "-".to_owned(), |at| at.chars().take(19).collect())
        };
        println!(
            "{:<24} {:>8}  {:<25}  {:<25}",
            row["queue"].as_str().unwrap_or_default(),
            row["messages"].as_u64().unwrap_or_default(),
            time("oldest_failure"),
            time("newest_failure")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_on_this_machine_only_for_loopback_urls() {
        assert!(is_loopback("http://127.0.0.1:15672"));
        assert!(is_loopback("http://localhost:15672/"));
        assert!(is_loopback("http://[::1]:15672"));
        assert!(!is_loopback("http://rabbit.internal:15672"));
        assert!(!is_loopback("http://10.0.0.5:15672"));
    }
}
