//! `conveyor dlq list`: finds the dead-letter queues through the management API, counts each
//! from the broker (nothing is read to count), and looks at each queue's head for its oldest
//! failure.

use anyhow::Context;
use conveyor::Names;
use conveyor::dead_letter;
use serde::Deserialize;

use super::amqp;
use system::management::{ManagementApi, percent_encode};

#[derive(Debug, Deserialize)]
struct QueueInfo {
    name: String,
    /// Held by a reader now (another operator's command); the API's figure, a few seconds old.
    #[serde(default)]
    messages_unacknowledged: u64,
}

/// A dead-letter queue as the management API lists it.
struct DeadLetterQueueInfo {
    service: String,
    held: u64,
}

async fn dead_letter_queues(
    amqp_url: &str,
    names: &Names,
) -> anyhow::Result<Vec<DeadLetterQueueInfo>> {
    let api = ManagementApi::for_broker(amqp_url)?;
    let path = format!(
        "queues/{}?columns=name,messages_unacknowledged",
        percent_encode(&api.vhost)
    );
    let response = api
        .get(&path, "the queue listing (the monitoring tag is needed)")
        .await?;
    let queues: Vec<QueueInfo> = response
        .json()
        .await
        .context("the management API answered with unexpected JSON")?;
    let mut found: Vec<DeadLetterQueueInfo> = queues
        .into_iter()
        .filter_map(|queue| {
            let service = dead_letter_service(names, &queue.name)?;
            Some(DeadLetterQueueInfo {
                service: service.to_owned(),
                held: queue.messages_unacknowledged,
            })
        })
        .collect();
    found.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(found)
}

/// The service whose dead-letter queue `queue` is under `names` (`orders` for
/// `orders.dlq`, or for `blue.orders.dlq` under the prefix `blue`); `None` for any other
/// queue, a dead-letter queue of another prefix's system among them.
fn dead_letter_service<'a>(names: &Names, queue: &'a str) -> Option<&'a str> {
    let service = names.unqualified(queue)?.strip_suffix(".dlq")?;
    (!service.is_empty() && !service.contains('.')).then_some(service)
}

/// Messages ready in `queue` now, as the broker counts them.
async fn ready(connection: &lapin::Connection, queue: &str) -> anyhow::Result<u64> {
    let declared = conveyor::queue_depth(connection, queue)
        .await
        .with_context(|| format!("could not count {queue}"))?;
    Ok(u64::from(declared.message_count()))
}

pub(crate) async fn run(names: &Names, json: bool) -> anyhow::Result<()> {
    let amqp = amqp();
    let first = amqp.urls().first().cloned().unwrap_or_default();
    let queues = dead_letter_queues(&first, names).await?;
    let connection = amqp.connect().await?;
    let mut rows = Vec::with_capacity(queues.len());
    for found in &queues {
        let queue = names.dead_letter_queue(&found.service);
        let ready = ready(&connection, &queue).await?;
        let oldest = if ready > 0 {
            dead_letter::oldest(&amqp, names, &found.service)
                .await?
                .and_then(|letter| letter.failed_at)
        } else {
            None
        };
        rows.push(serde_json::json!({
            "service": found.service, "queue": queue, "messages": ready + found.held,
            "held_by_a_reader": found.held, "oldest_failure": oldest,
        }));
    }
    let _ = connection.close(200, "listed".into()).await;
    if json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[serde_json::Value]) {
    if rows.is_empty() {
        println!("No dead-letter queues on this vhost.");
        return;
    }
    println!(
        "{:<24} {:>10} {:>8}  {:<25}",
        "QUEUE", "MESSAGES", "HELD", "OLDEST FAILURE"
    );
    for row in rows {
        let oldest = row["oldest_failure"]
            .as_str()
            .map_or_else(|| "-".to_owned(), |at| at.chars().take(19).collect());
        println!(
            "{:<24} {:>10} {:>8}  {:<25}",
            row["queue"].as_str().unwrap_or_default(),
            row["messages"].as_u64().unwrap_or_default(),
            row["held_by_a_reader"].as_u64().unwrap_or_default(),
            oldest,
        );
    }
    if rows
        .iter()
        .any(|row| row["held_by_a_reader"].as_u64().unwrap_or_default() > 0)
    {
        println!("HELD: messages a reader holds now (another operator's dlq command, say).");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_queues_listed_are_those_of_this_systems_names() {
        let default = Names::default();
        assert_eq!(dead_letter_service(&default, "orders.dlq"), Some("orders"));
        assert_eq!(dead_letter_service(&default, "orders.events"), None);
        assert_eq!(dead_letter_service(&default, "conveyor.dlq-audit"), None);
        assert_eq!(dead_letter_service(&default, "blue.orders.dlq"), None);
        let blue = Names::with_prefix("blue");
        assert_eq!(
            dead_letter_service(&blue, "blue.orders.dlq"),
            Some("orders")
        );
        assert_eq!(dead_letter_service(&blue, "orders.dlq"), None);
        assert_eq!(dead_letter_service(&blue, "bluegreen.orders.dlq"), None);
        assert_eq!(dead_letter_service(&blue, "blue.dlq"), None);
    }
}
