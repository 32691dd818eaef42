//! `conveyor bench gateway`: what the gateway adds to a request. The same authenticated
//! `GET /products/{sku}` is offered at a fixed rate straight to inventory and through the
//! gateway (`/api/products/{sku}`), in alternating rounds within one run, and the latency
//! of each is reported side by side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor::Shutdown;
use serde_json::json;
use system::ServiceName;
use system::scenario::Api;

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatewayLoad {
    /// Requests per second offered (open loop: a slow answer does not slow the offer).
    pub(crate) rate: u32,
    /// Seconds each round offers load.
    pub(crate) seconds: u64,
    /// Rounds per target, alternating; medians over rounds are reported.
    pub(crate) rounds: usize,
}

/// Latencies of one round, in milliseconds, and how many requests failed.
struct Round {
    p50: f64,
    p99: f64,
    failed: usize,
}

pub(crate) async fn run(load: GatewayLoad, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        load.rate > 0 && load.seconds > 0 && load.rounds > 0,
        "--rate, --seconds and --rounds must be at least 1"
    );
    let mut config = system::SystemConfig::from_env()?;
    let admin = config.for_own_run();
    let forward_secret = config.share_forward_secret()?;
    let (stop, shutdown) = Shutdown::new();
    let mut running = system::start(
        &config,
        &[ServiceName::USERS, ServiceName::INVENTORY],
        shutdown.clone(),
    )
    .await?;
    let urls = running.first_urls();
    // Only users and inventory run; the gateway's other URLs are the defaults, never called.
    let gateway = super::demo::start_gateway(&running, &forward_secret, shutdown).await?;
    let measured = measure(&urls, &gateway.url, &admin, load).await;
    stop.fire();
    let _ = gateway.task.await;
    running.wait().await?;
    let (direct, through) = measured?;
    report(&direct, &through, load, json);
    Ok(())
}

/// Alternating rounds straight to inventory and through the gateway.
async fn measure(
    urls: &BTreeMap<String, String>,
    gateway_url: &str,
    admin: &system::AdminAccount,
    load: GatewayLoad,
) -> anyhow::Result<(Vec<Round>, Vec<Round>)> {
    let every: BTreeMap<String, String> = system::ServiceName::all()
        .map(|service| {
            let url = urls.get(service.as_str()).cloned().unwrap_or_default();
            (service.to_string(), url)
        })
        .collect();
    let api = Api::new(&every)?
        .signed_in(&admin.email, &admin.password)
        .await?;
    let token = api.bearer_token().unwrap_or_default().to_owned();
    let sku = format!(
        "BENCH-GW-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
    .to_ascii_uppercase();
    api.post(
        "inventory",
        "/products",
        &json!({ "sku": sku, "name": "Gateway bench", "price_cents": 100, "stock": 1 }),
    )
    .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let direct = format!("{}/products/{sku}", urls["inventory"]);
    let through = format!("{gateway_url}/api/products/{sku}");
    // A short warm-up of each, so connection set-up and key fetching are not measured.
    round(&client, &direct, &token, GatewayLoad { seconds: 1, ..load }).await;
    round(
        &client,
        &through,
        &token,
        GatewayLoad { seconds: 1, ..load },
    )
    .await;
    let (mut direct_rounds, mut through_rounds) = (Vec::new(), Vec::new());
    for _ in 0..load.rounds {
        direct_rounds.push(round(&client, &direct, &token, load).await);
        through_rounds.push(round(&client, &through, &token, load).await);
    }
    Ok((direct_rounds, through_rounds))
}

/// Offers `load.rate` requests per second to `url` for `load.seconds`, each on its own task.
async fn round(client: &reqwest::Client, url: &str, token: &str, load: GatewayLoad) -> Round {
    let total = u64::from(load.rate) * load.seconds;
    let interval = Duration::from_secs(1) / load.rate;
    let started = tokio::time::Instant::now();
    let url: Arc<str> = url.into();
    let token: Arc<str> = token.into();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let due = started + interval * u32::try_from(index).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = client.get(&*url).bearer_auth(&*token).send().await;
            let ok = match answer {
                Ok(answer) => answer.status().is_success() && answer.bytes().await.is_ok(),
                Err(_) => false,
            };
            (sent.elapsed(), ok)
        });
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    while let Some(Ok((latency, ok))) = tasks.join_next().await {
        if ok {
            latencies.push(latency.as_secs_f64() * 1000.0);
        } else {
            failed += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    Round {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        failed,
    }
}

fn percentile(sorted: &[f64], share: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * share).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(direct: &[Round], through: &[Round], load: GatewayLoad, json: bool) {
    let summary = |rounds: &[Round]| {
        (
            median(rounds.iter().map(|round| round.p50).collect()),
            median(rounds.iter().map(|round| round.p99).collect()),
            rounds.iter().map(|round| round.failed).sum::<usize>(),
        )
    };
    let (direct_p50, direct_p99, direct_failed) = summary(direct);
    let (through_p50, through_p99, through_failed) = summary(through);
    if json {
        println!(
            "{}",
            json!({
                "rate": load.rate, "seconds": load.seconds, "rounds": load.rounds,
                "direct_ms": { "p50": direct_p50, "p99": direct_p99, "failed": direct_failed },
                "gateway_ms": { "p50": through_p50, "p99": through_p99, "failed": through_failed },
                "added_p50_ms": through_p50 - direct_p50,
            })
        );
        return;
    }
    println!(
        "GET /products/{{sku}} at {} requests/s, {} rounds of {} s each (medians of rounds)",
        load.rate, load.rounds, load.seconds
    );
    println!(
        "  straight to inventory  p50 {direct_p50:.2} ms  p99 {direct_p99:.2} ms  failed {direct_failed}"
    );
    println!(
        "  through the gateway    p50 {through_p50:.2} ms  p99 {through_p99:.2} ms  failed {through_failed}"
    );
    println!(
        "  the gateway adds       {:.2} ms at p50",
        through_p50 - direct_p50
    );
}
