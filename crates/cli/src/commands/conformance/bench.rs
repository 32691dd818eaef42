//! `conformance bench`: how fast a subject handles events, beside the Rust runtime in the
//! same run. Each measurement queues a backlog while the subject is stopped, starts it, and
//! times its effects from the first to the last (the table's commit-time clock), so neither
//! start-up nor the publisher's pace counts.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use uuid::Uuid;

use super::EVENT_TYPE;
use super::sandbox::Sandbox;
use super::send::{self, Outgoing, Sender, Senders};
use super::subject_process::SubjectProcess;
use crate::commands::bench::median_of as median;

/// The longest a backlog may take to be handled.
const LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The command that starts the subject, as for `conformance run`.
    #[arg(long, value_name = "COMMAND")]
    subject: String,
    /// Events in each backlog.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..))]
    events: u32,
    /// Measurements of each, the Rust runtime's and the subject's taken in turn.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    #[command(flatten)]
    server: super::PostgresServer,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = std::env::current_exe()?;
    let rust = format!("'{}' conformance subject", runtime.display());
    let mut pairs = Vec::new();
    for round in 1..=args.rounds {
        let mut pair = [0.0; 2];
        for (slot, (label, command)) in [
            ("Rust runtime", rust.as_str()),
            ("subject", args.subject.as_str()),
        ]
        .into_iter()
        .enumerate()
        {
            eprintln!("round {round} of {}: {label}", args.rounds);
            pair[slot] = measure(command, args.events, &args.server.postgres).await?;
        }
        pairs.push(pair);
    }
    let rust_rates: Vec<f64> = pairs.iter().map(|pair| pair[0]).collect();
    let subject_rates: Vec<f64> = pairs.iter().map(|pair| pair[1]).collect();
    let ratios: Vec<f64> = pairs.iter().map(|pair| pair[1] / pair[0]).collect();
    let summary = json!({
        "subject": args.subject,
        "events": args.events,
        "rust_events_per_second": rust_rates,
        "subject_events_per_second": subject_rates,
        "ratio_by_pair": ratios,
        "rust_median": median(rust_rates.clone()),
        "subject_median": median(subject_rates.clone()),
        "ratio_median": median(ratios.clone()),
    });
    if args.json {
        println!("{summary}");
        return Ok(());
    }
    println!("round  Rust runtime ev/s  subject ev/s  subject / Rust");
    for (round, pair) in pairs.iter().enumerate() {
        println!(
            "{:>5}  {:>17.0}  {:>12.0}  {:>14.2}",
            round + 1,
            pair[0],
            pair[1],
            pair[1] / pair[0]
        );
    }
    println!(
        "median {:>16.0}  {:>12.0}  {:>14.2}   ({} events each, inbox and one effect row per event)",
        median(rust_rates),
        median(subject_rates),
        median(ratios),
        args.events
    );
    Ok(())
}

/// Events per second the subject handled a backlog of `events` at, on a sandbox of its own.
async fn measure(command: &str, events: u32, postgres: &str) -> anyhow::Result<f64> {
    let sandbox = Sandbox::create(postgres).await?;
    let log = std::env::temp_dir().join(format!("conveyor-conformance-bench-{}.log", sandbox.id));
    let measured = measure_on(&sandbox, command, events, &log).await;
    sandbox.remove().await;
    if measured.is_ok() {
        let _ = std::fs::remove_file(&log);
    }
    measured
}

async fn measure_on(
    sandbox: &Sandbox,
    command: &str,
    events: u32,
    log: &Path,
) -> anyhow::Result<f64> {
    // Started once so that it declares its queues, then stopped while the backlog is queued.
    let mut subject = SubjectProcess::start(command, sandbox, log)?;
    subject.wait_until_consuming(sandbox).await?;
    subject.stop().await;
    let backlog: Vec<Outgoing> = (0..events)
        .map(|_| {
            let id = Uuid::now_v7();
            let data = send::order_confirmed(json!({}))?;
            Ok(Outgoing {
                sender: Sender::Owner,
                exchange: sandbox.names.events_exchange(),
                routing_key: EVENT_TYPE.to_owned(),
                body: send::envelope(id, EVENT_TYPE, &data),
                properties: send::properties(id, "bench", EVENT_TYPE),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let senders = Senders::open(sandbox).await?;
    for chunk in backlog.chunks(1000) {
        senders.send(chunk).await?;
    }
    senders.close().await;
    let subject = SubjectProcess::start(command, sandbox, log)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&sandbox.database_url)
        .await?;
    let progress = ProgressBar::new(u64::from(events)).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events handled {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (count, seconds) = loop {
        let (count, seconds): (i64, f64) = sqlx::query_as(
            "SELECT count(*), coalesce(extract(epoch FROM max(handled_at) - min(handled_at))::float8, 0)
             FROM conformance_effects",
        )
        .fetch_one(&pool)
        .await?;
        progress.set_position(u64::try_from(count).unwrap_or(0));
        if count >= i64::from(events) {
            break (count, seconds);
        }
        anyhow::ensure!(
            started.elapsed() < LIMIT,
            "the subject handled {count} of {events} events in {} s; its output:\n{}",
            LIMIT.as_secs(),
            subject.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish_and_clear();
    pool.close().await;
    subject.stop().await;
    anyhow::ensure!(
        count == i64::from(events),
        "{count} effects for {events} events: some were handled twice"
    );
    anyhow::ensure!(
        seconds > 0.0,
        "every effect has the same time: too few events to time"
    );
    Ok((count - 1) as f64 / seconds)
}
