//! `conveyor bench console`: the operators' console over one dead-letter queue of a million
//! letters. On a vhost of its own it fills inventory's dead-letter queue, starts users here and
//! `conveyor console` as a process of its own (so its memory is its own), signs in and measures
//! what an operator waits for: each page's answer and weight, the queue's count on the
//! dead-letter page, how soon a scan streams its first groups, a whole scan, and the console's
//! peak resident memory. The vhost goes when it ends, whatever happened.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use conveyor::{AmqpConfig, Envelope, Shutdown};
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use system::ServiceName;
use system::management::{ManagementApi, percent_encode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The service whose dead-letter queue is filled: the one that consumes `order.created`.
const SERVICE: &str = "inventory";
/// Letters published before their confirms are awaited.
const LOAD_WINDOW: u64 = 5000;
/// What the issue asks of the console with a million letters.
const FIRST_GROUPS_TARGET: Duration = Duration::from_secs(2);
const MEMORY_TARGET_MIB: f64 = 200.0;
const PAGE_TARGET_KIB: f64 = 200.0;

/// How the console is loaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsoleLoad {
    /// Dead letters in the queue.
    pub(crate) letters: u64,
    /// Times each page and the scan's first groups are asked for; medians are reported.
    pub(crate) rounds: usize,
}

/// One page's figures over the rounds.
#[derive(Debug, serde::Serialize)]
struct PageFigure {
    path: String,
    median_ms: f64,
    bytes: usize,
}

#[derive(Debug, serde::Serialize)]
struct ConsoleFigures {
    letters: u64,
    load_seconds: f64,
    pages: Vec<PageFigure>,
    /// Each round's time to a scan's first streamed groups, in milliseconds.
    first_groups_ms: Vec<f64>,
    whole_scan_seconds: f64,
    peak_resident_mib: f64,
    /// Every letter was in the queue after the scans.
    letters_kept: bool,
}

pub(crate) async fn run(load: ConsoleLoad, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        load.letters > 0 && load.rounds > 0,
        "--letters and --rounds must be at least 1"
    );
    let mut config = system::SystemConfig::from_env()?;
    let vhost = BenchVhost::create(&config.amqp.url()).await?;
    // Users runs here on a database of the benchmark's own: on the real one, its relay would
    // send the real outbox's events into the benchmark's vhost, where nobody gets them.
    let users_database = config
        .database_urls
        .get(&ServiceName::USERS)
        .map(|url| BenchDatabase::beside(url, &vhost.name))
        .context("no users database is configured")?;
    config
        .database_urls
        .insert(ServiceName::USERS, users_database.url.clone());
    let measured = tokio::select! {
        measured = measure(&vhost, config, load) => measured,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(error) = vhost.remove().await {
        eprintln!(
            "warning: the benchmark's vhost {} was not removed ({error:#}): rabbitmqctl delete_vhost {}",
            vhost.name, vhost.name
        );
    }
    if let Err(error) = users_database.remove().await {
        eprintln!(
            "warning: the benchmark's database {} was not removed ({error:#}): DROP DATABASE \"{}\"",
            users_database.name, users_database.name
        );
    }
    report(&measured?, load, json)
}

/// A database of the benchmark's own on the server of `url`, which the service started on
/// it creates.
struct BenchDatabase {
    name: String,
    url: String,
}

impl BenchDatabase {
    /// Named like the vhost, with underscores.
    fn beside(url: &str, vhost: &str) -> Self {
        let name = vhost.replace('-', "_");
        Self {
            url: with_last_segment(url, &name),
            name,
        }
    }

    async fn remove(&self) -> anyhow::Result<()> {
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)?.database("postgres");
        let mut server = sqlx::ConnectOptions::connect(&options).await?;
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut server)
            .await?;
        Ok(())
    }
}

/// A vhost of the benchmark's own, given to AMQP_URL's user.
struct BenchVhost {
    name: String,
    url: String,
    management: ManagementApi,
}

impl BenchVhost {
    async fn create(amqp_url: &str) -> anyhow::Result<Self> {
        let management = ManagementApi::for_broker(amqp_url)?;
        let name = format!(
            "conveyor-bench-console-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let path = percent_encode(&name);
        management
            .put(
                &format!("vhosts/{path}"),
                &serde_json::json!({}),
                "making a vhost",
            )
            .await
            .context(
                "the benchmark makes a vhost of its own: AMQP_URL's user must be an administrator",
            )?;
        let permissions = serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" });
        let user = percent_encode(management.user());
        let vhost = Self {
            url: with_vhost(amqp_url, &name),
            name,
            management,
        };
        if let Err(error) = vhost
            .management
            .put(
                &format!("permissions/{path}/{user}"),
                &permissions,
                "giving the vhost to AMQP_URL's user",
            )
            .await
        {
            let _ = vhost.remove().await;
            return Err(error);
        }
        Ok(vhost)
    }

    async fn remove(&self) -> anyhow::Result<()> {
        let path = format!("vhosts/{}", percent_encode(&self.name));
        self.management.delete(&path, "removing the vhost").await
    }
}

/// `amqp_url` with its vhost replaced by `vhost`.
fn with_vhost(amqp_url: &str, vhost: &str) -> String {
    with_last_segment(amqp_url, &percent_encode(vhost))
}

/// `url` with its path (an AMQP vhost, a Postgres database) replaced by `segment`, its query
/// kept.
fn with_last_segment(url: &str, segment: &str) -> String {
    let authority_start = url.find("://").map_or(0, |at| at + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |at| authority_start + at);
    let query = url[authority_end..]
        .find('?')
        .map_or("", |at| &url[authority_end + at..]);
    format!("{}/{segment}{query}", &url[..authority_end])
}

async fn measure(
    vhost: &BenchVhost,
    mut config: system::SystemConfig,
    load: ConsoleLoad,
) -> anyhow::Result<ConsoleFigures> {
    config.amqp = AmqpConfig::new(vhost.url.clone(), "conveyor bench console");
    let admin = config.for_own_run();
    let connection = config.amqp.connect().await?;
    system::all_topology(&config.names)?
        .declare(&connection)
        .await?;
    let queue = config.names.dead_letter_queue(SERVICE);
    let timer = Instant::now();
    load_letters(&connection, &queue, load.letters).await?;
    let load_seconds = timer.elapsed().as_secs_f64();

    let (stop, shutdown) = Shutdown::new();
    let mut running = system::start(&config, &[ServiceName::USERS], shutdown).await?;
    let users_url = running.first_urls().remove("users").unwrap_or_default();
    let measured = async {
        let mut console = ConsoleProcess::start(&vhost.url, &users_url).await?;
        let client = ConsoleClient::signed_in(&console.url, &admin.email, &admin.password).await?;
        let figures = asked(&client, load).await;
        let peak_resident_mib = console.peak_resident_mib();
        console.stop().await;
        let (pages, first_groups_ms, whole_scan_seconds) = figures?;
        let letters_kept = all_back(&connection, &queue, load.letters).await?;
        Ok(ConsoleFigures {
            letters: load.letters,
            load_seconds,
            pages,
            first_groups_ms,
            whole_scan_seconds,
            peak_resident_mib: peak_resident_mib?,
            letters_kept,
        })
    }
    .await;
    stop.fire();
    running.wait().await?;
    let _ = connection.close(200, "benchmark done".into()).await;
    measured
}

/// Publishes `count` dead letters into `queue` as a failing inventory would have left them:
/// every hundredth a ledger timeout that ran out of retries, the rest a warehouse refusal.
async fn load_letters(connection: &Connection, queue: &str, count: u64) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let progress = ProgressBar::new(count).with_style(ProgressStyle::with_template(
        "loading dead letters {bar:30} {pos}/{len} ({per_sec}, {eta} left)",
    )?);
    let failed_at = chrono::Utc::now().to_rfc3339();
    for start in (0..count).step_by(usize::try_from(LOAD_WINDOW)?) {
        let end = (start + LOAD_WINDOW).min(count);
        let mut confirms = Vec::with_capacity(usize::try_from(end - start)?);
        for n in start..end {
            let (envelope, headers) = dead_letter(n, &failed_at);
            let properties = BasicProperties::default()
                .with_message_id(envelope.id.to_string().into())
                .with_type(envelope.event_type.clone().into())
                .with_correlation_id(envelope.correlationid.to_string().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_headers(headers);
            let body = envelope.to_bytes();
            let options = BasicPublishOptions::default();
            confirms.push(
                channel
                    .basic_publish("".into(), queue.into(), options, &body, properties)
                    .await?,
            );
        }
        for confirm in futures_util::future::join_all(confirms).await {
            anyhow::ensure!(confirm?.is_ack(), "the broker refused a dead letter");
        }
        progress.set_position(end);
    }
    progress.finish_and_clear();
    let _ = channel.close(200, "loaded".into()).await;
    Ok(())
}

/// The `n`th letter: an `order.created` of its own flow, and the headers a dead-lettering
/// consumer writes.
fn dead_letter(n: u64, failed_at: &str) -> (Envelope, FieldTable) {
    let order = uuid::Uuid::new_v4();
    let data = serde_json::json!({
        "order_id": order,
        "customer_id": uuid::Uuid::new_v4(),
        "items": [{ "sku": format!("SKU-{}", n % 500), "quantity": 1 + n % 3, "price_cents": 250 }],
        "total_cents": 250 * (1 + n % 3),
        "currency": "EUR",
    });
    let envelope = Envelope::new("orders", "order.created", data)
        .with_subject(order.to_string())
        .with_correlation_id(order);
    let (kind, error) = if n.is_multiple_of(100) {
        (
            "retries-exhausted",
            format!("timeout talking to the ledger after {} ms", 5000 + n % 997),
        )
    } else {
        ("permanent", format!("the warehouse refuses order {order}"))
    };
    let mut headers = FieldTable::default();
    conveyor::headers::set_str(&mut headers, conveyor::headers::ERROR, &error);
    conveyor::headers::set_str(&mut headers, conveyor::headers::ERROR_KIND, kind);
    conveyor::headers::set_str(&mut headers, conveyor::headers::SERVICE, SERVICE);
    conveyor::headers::set_str(&mut headers, conveyor::headers::FAILED_AT, failed_at);
    (envelope, headers)
}

/// Whether `queue` holds `count` letters again within 30 s of the last scan's end.
async fn all_back(connection: &Connection, queue: &str, count: u64) -> anyhow::Result<bool> {
    let channel = connection.create_channel().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let depth = channel
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await?
            .message_count();
        if u64::from(depth) == count || Instant::now() > deadline {
            let _ = channel.close(200, "counted".into()).await;
            return Ok(u64::from(depth) == count);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `conveyor console` as a process of its own, on the benchmark's vhost.
struct ConsoleProcess {
    child: Child,
    url: String,
}

impl ConsoleProcess {
    async fn start(amqp_url: &str, users_url: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("console")
            .env("AMQP_URL", amqp_url)
            .env("USERS_URL", users_url)
            .env("CONSOLE_PORT", "0")
            .env("LISTEN_ADDR", "127.0.0.1")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting `conveyor console`")?;
        let stderr = child.stderr.take().context("the console's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("console").map(str::trim) {
                    return Ok(url.trim_end_matches('/').to_owned());
                }
            }
            anyhow::bail!("`conveyor console` stopped before it listened")
        })
        .await
        .context("`conveyor console` did not listen within 30 s")??;
        // What it logs after is drained, so a full pipe never stops it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, url })
    }

    /// The most memory it has held resident (VmHWM).
    fn peak_resident_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("the console has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("the console's VmHWM is unreadable")?;
        Ok(kib / 1024.0)
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// An operator's browser, as far as the benchmark needs one: the session cookie and the
/// console's own origin on every request.
struct ConsoleClient {
    base: String,
    cookie: String,
    http: reqwest::Client,
}

impl ConsoleClient {
    async fn signed_in(base: &str, email: &str, password: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(600))
            .build()?;
        let form = format!(
            "email={}&password={}",
            percent_encode(email),
            percent_encode(password)
        );
        let answer = http
            .post(format!("{base}/sign-in"))
            .header("origin", base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await?;
        let cookie = answer
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.starts_with("conveyor_console="))
            .and_then(|value| value.split(';').next())
            .with_context(|| {
                format!(
                    "signing in to the console answered {} without a session",
                    answer.status()
                )
            })?
            .to_owned();
        Ok(Self {
            base: base.to_owned(),
            cookie,
            http,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "GET {path} answered {}",
            answer.status()
        );
        Ok(answer)
    }

    /// A page whole: how long it took and its text.
    async fn page(&self, path: &str) -> anyhow::Result<(Duration, String)> {
        let timer = Instant::now();
        let text = self.get(path).await?.text().await?;
        Ok((timer.elapsed(), text))
    }

    /// How long a live scan takes to stream its first groups. Another reader still giving
    /// the queue back (the last round's scan) is waited for.
    async fn first_groups(&self, path: &str) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let timer = Instant::now();
            let mut answer = self.get(path).await?;
            let mut seen = String::new();
            while let Some(chunk) = answer.chunk().await? {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("data-group=") {
                    // Dropping the stream stops the scan, as closing the page does.
                    return Ok(timer.elapsed());
                }
                if seen.contains("event: problem") {
                    break;
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the scan streamed no group within 60 s: {}",
                seen.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The pages an operator opens, each `rounds` times; the scan's first groups; one whole scan.
async fn asked(
    client: &ConsoleClient,
    load: ConsoleLoad,
) -> anyhow::Result<(Vec<PageFigure>, Vec<f64>, f64)> {
    let shown = operator_console::thousands(load.letters);
    let dead_letters = format!("/dead-letters/{SERVICE}");
    // The management API refreshes its figures every few seconds: the loaded letters show
    // once it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    let count_cell = format!(">{shown}<");
    while !client.page(&dead_letters).await?.1.contains(&count_cell) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the dead-letter page of {SERVICE} did not show its {shown} letters within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let paths = [
        "/".to_owned(),
        "/dead-letters".to_owned(),
        dead_letters.clone(),
        format!("{dead_letters}/letters"),
        "/flows".to_owned(),
        "/replays".to_owned(),
        "/audit".to_owned(),
        "/runbooks".to_owned(),
    ];
    let mut pages = Vec::new();
    for path in paths {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..load.rounds {
            let (took, text) = client.page(&path).await?;
            times.push(took.as_secs_f64() * 1000.0);
            bytes = bytes.max(text.len());
        }
        let median_ms = super::bench::median_of(times);
        pages.push(PageFigure {
            path,
            median_ms,
            bytes,
        });
    }
    let mut first_groups_ms = Vec::new();
    for _ in 0..load.rounds {
        let took = client
            .first_groups(&format!("{dead_letters}/scan?live=1"))
            .await?;
        first_groups_ms.push(took.as_secs_f64() * 1000.0);
    }
    // Without JavaScript the scan answers with the whole page once it has read every letter.
    let scan_path = format!("{dead_letters}/scan");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (took, text) = loop {
        let (took, text) = client.page(&scan_path).await?;
        if !text.contains("another reader holds") || Instant::now() > deadline {
            break (took, text);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    anyhow::ensure!(
        text.contains(r#"data-scan-state="done""#)
            && text.contains(&format!(r#"<span class="read">{shown}</span>"#)),
        "the whole scan's page does not say it read {shown} letters"
    );
    pages.push(PageFigure {
        path: scan_path,
        median_ms: took.as_secs_f64() * 1000.0,
        bytes: text.len(),
    });
    Ok((pages, first_groups_ms, took.as_secs_f64()))
}

/// `bytes` in KiB, for the report.
fn kib(bytes: usize) -> f64 {
    f64::from(u32::try_from(bytes).unwrap_or(u32::MAX)) / 1024.0
}

fn report(figures: &ConsoleFigures, load: ConsoleLoad, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(figures)?);
        return Ok(());
    }
    let first_groups = super::bench::median_of(figures.first_groups_ms.clone());
    let (fastest, slowest) = figures
        .first_groups_ms
        .iter()
        .fold((f64::MAX, 0.0_f64), |(low, high), &ms| {
            (low.min(ms), high.max(ms))
        });
    let heaviest = figures
        .pages
        .iter()
        .map(|page| page.bytes)
        .max()
        .unwrap_or(0);
    let heaviest_kib = kib(heaviest);
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!(
        "conveyor bench console: {} dead letters in {SERVICE}'s queue (loaded in {:.1} s); medians of {} rounds",
        operator_console::thousands(figures.letters),
        figures.load_seconds,
        load.rounds
    );
    println!("  {:<36} {:>10} {:>10}", "page", "median ms", "KiB");
    for page in &figures.pages {
        println!(
            "  {:<36} {:>10.1} {:>10.1}",
            page.path,
            page.median_ms,
            kib(page.bytes)
        );
    }
    println!(
        "  scan's first groups    {first_groups:>8.0} ms (rounds {fastest:.0}-{slowest:.0})   target < {} ms: {}",
        FIRST_GROUPS_TARGET.as_millis(),
        mark(first_groups < FIRST_GROUPS_TARGET.as_secs_f64() * 1000.0)
    );
    println!(
        "  whole scan             {:>8.1} s ({:.0} letters/s)",
        figures.whole_scan_seconds,
        super::bench::per_second(
            figures.letters,
            Duration::from_secs_f64(figures.whole_scan_seconds)
        )
    );
    println!(
        "  console's peak memory  {:>8.1} MiB resident          target < {MEMORY_TARGET_MIB} MiB: {}",
        figures.peak_resident_mib,
        mark(figures.peak_resident_mib < MEMORY_TARGET_MIB)
    );
    println!(
        "  heaviest page          {heaviest_kib:>8.1} KiB                   target < {PAGE_TARGET_KIB} KiB: {}",
        mark(heaviest_kib < PAGE_TARGET_KIB)
    );
    println!(
        "  every letter still in the queue after the scans: {}",
        if figures.letters_kept { "yes" } else { "NO" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gets_the_benchmarks_vhost_or_database_and_keeps_its_query() {
        assert_eq!(
            with_vhost(
                "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10",
                "bench/a"
            ),
            "amqp://guest:guest@127.0.0.1:5672/bench%2Fa?heartbeat=10"
        );
        assert_eq!(
            with_vhost("amqp://127.0.0.1:5672", "bench"),
            "amqp://127.0.0.1:5672/bench"
        );
        assert_eq!(
            BenchDatabase::beside(
                "postgres://postgres@127.0.0.1:5432/conveyor_users",
                "bench-console-1"
            )
            .url,
            "postgres://postgres@127.0.0.1:5432/bench_console_1"
        );
    }
}
