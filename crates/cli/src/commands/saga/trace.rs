//! `conveyor saga trace ORDER_ID` and `conveyor saga stuck`: where orders are, and why.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use conveyor::AmqpConfig;
use system::ServiceName;
use system::saga_map::SagaMap;
use system::saga_trace::{self, Outcome, Sources, StuckReport, Trace};
use uuid::Uuid;

use super::show;
use crate::commands::dlq::args::parse_age;
use crate::commands::service_database;
use crate::terminal::printable;

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The order's id (as orders answered when it was placed).
    order_id: Uuid,
    /// Print the timeline and diagnosis as one JSON object.
    #[arg(long)]
    json: bool,
    /// Leave the broker out: no dead letters or queue depths (the databases and /readyz only).
    #[arg(long)]
    no_broker: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StuckArgs {
    /// Orders pending for longer than this (90s, 5m, 2h).
    #[arg(long, value_parser = parse_age, default_value = "30s")]
    older_than: Duration,
    /// Diagnose at most this many, the oldest first; all are counted.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Leave the broker out, as for `trace`.
    #[arg(long)]
    no_broker: bool,
}

pub(crate) async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    let (sources, map) = sources(args.no_broker).await?;
    let Some(trace) = saga_trace::trace(&sources, &map, args.order_id).await? else {
        anyhow::bail!(
            "orders has no order {}: check the id, and that ORDERS_DATABASE_URL names the orders database",
            args.order_id
        );
    };
    show(args.json, &trace, print_trace)
}

pub(crate) async fn stuck(args: StuckArgs) -> anyhow::Result<()> {
    let (sources, map) = sources(args.no_broker).await?;
    let report = saga_trace::stuck(&sources, &map, args.older_than, i64::from(args.limit)).await?;
    show(args.json, &report, print_stuck)?;
    anyhow::ensure!(
        report.pending == 0,
        "{} orders pending for longer than {}s",
        report.pending,
        report.older_than_seconds
    );
    let parked: i64 = report.parked.iter().map(|found| found.summary.count).sum();
    anyhow::ensure!(
        parked == 0,
        "{parked} events parked in the services' outboxes"
    );
    Ok(())
}

/// Every service's database, the broker (its queues under `CONVEYOR_NAME_PREFIX`, as the
/// services name them) and each service's URL, from the environment.
async fn sources(no_broker: bool) -> anyhow::Result<(Sources, SagaMap)> {
    let config = system::SystemConfig::from_env()?;
    let names = config.names.clone();
    let pools = futures_util::future::try_join_all(
        ServiceName::all().map(|service| service_database(&config, service)),
    )
    .await?;
    let databases: BTreeMap<ServiceName, sqlx::PgPool> = ServiceName::all().zip(pools).collect();
    let urls = crate::commands::service_urls();
    let sources = Sources {
        databases,
        amqp: (!no_broker).then(|| AmqpConfig::from_env("conveyor saga trace")),
        names: names.clone(),
        urls,
    };
    Ok((sources, SagaMap::derive(&names)?))
}

fn print_trace(trace: &Trace) {
    let order = &trace.order;
    let finished = order.finished_at.map_or_else(
        || format!("deadline {}", order.deadline_at.format("%H:%M:%S%.3f")),
        |at| format!("finished {}", at.format("%H:%M:%S%.3f")),
    );
    let reason = order
        .reason
        .as_deref()
        .map_or_else(String::new, |reason| format!(" ({reason})"));
    println!(
        "order {}  {}{reason}  created {}  {finished}",
        order.id,
        order.status,
        order.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
    );
    if let Some(waiting) = &trace.waiting {
        println!(
            "waits on  {} to {} {}  since {}",
            waiting.service,
            waiting.action,
            waiting.event_type,
            waiting.since.format("%H:%M:%S%.3f")
        );
    }
    for (index, finding) in trace.diagnosis.iter().enumerate() {
        let label = if index == 0 { "likely" } else { "also" };
        println!("{label:<9} {}", printable(&finding.message));
    }
    println!();
    println!(
        "{:<12}  {:<20}  {:<9}  {:<9}  OUTCOME",
        "TIME", "EVENT", "FROM", "TO"
    );
    for event in &trace.events {
        let time = event.created_at.format("%H:%M:%S%.3f");
        let sent = match (event.published_at, event.parked_at) {
            (Some(_), _) => String::new(),
            (None, Some(_)) => format!(" [parked after {} refusals]", event.refusals),
            (None, None) => " [not yet published]".to_owned(),
        };
        if event.handlers.is_empty() {
            println!(
                "{time:<12}  {:<20}  {:<9}  {:<9}  end of its path{sent}",
                event.event_type, event.emitted_by, "-"
            );
        }
        for handling in &event.handlers {
            println!(
                "{time:<12}  {:<20}  {:<9}  {:<9}  {}{sent}",
                event.event_type,
                event.emitted_by,
                handling.service,
                printable(&describe(&handling.outcome))
            );
        }
    }
    for note in &trace.notes {
        println!("note: {}", printable(note));
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Handled { at, attempt } => format!(
            "handled {}{}",
            at.format("%H:%M:%S%.3f"),
            attempt
                .filter(|n| *n > 1)
                .map_or_else(String::new, |n| format!(" on attempt {n}"))
        ),
        Outcome::DeadLettered {
            kind,
            error,
            attempts,
            at,
        } => format!(
            "dead-lettered{} as {}{}: {}",
            at.map_or_else(String::new, |at| format!(" {}", at.format("%H:%M:%S"))),
            kind.as_deref().unwrap_or("(by the broker)"),
            attempts.map_or_else(String::new, |n| format!(" after {n} attempts")),
            error.as_deref().unwrap_or("-")
        ),
        Outcome::Pending => "not handled yet".to_owned(),
    }
}

fn print_stuck(report: &StuckReport) {
    if !report.orders.is_empty() {
        println!(
            "{:<36}  {:>7}  {:<34}  LIKELY REASON",
            "ORDER", "AGE", "WAITS ON"
        );
    }
    for trace in &report.orders {
        let age = chrono::Utc::now() - trace.order.created_at;
        let waits = trace.waiting.as_ref().map_or_else(
            || "-".to_owned(),
            |waiting| {
                format!(
                    "{} to {} {}",
                    waiting.service, waiting.action, waiting.event_type
                )
            },
        );
        let reason = trace
            .diagnosis
            .first()
            .map_or("-", |finding| finding.message.as_str());
        println!(
            "{:<36}  {:>6}s  {waits:<34}  {}",
            trace.order.id,
            age.num_seconds(),
            printable(reason)
        );
    }
    let shown = report.orders.len();
    println!(
        "{} orders pending for longer than {}s{}.",
        report.pending,
        report.older_than_seconds,
        if i64::try_from(shown).unwrap_or(i64::MAX) < report.pending {
            format!(" (the oldest {shown} shown)")
        } else {
            String::new()
        }
    );
    for parked in &report.parked {
        let oldest = parked
            .summary
            .oldest_created_at
            .map_or_else(String::new, |at| {
                format!(", the oldest from {}", at.format("%Y-%m-%d %H:%M:%S"))
            });
        println!(
            "parked: {} holds {} events the broker will never take{oldest}: `conveyor outbox parked --service {}` lists them",
            parked.service, parked.summary.count, parked.service
        );
    }
    if let Some(notes) = report.orders.first().map(|trace| &trace.notes) {
        for note in notes {
            println!("note: {}", printable(note));
        }
    }
}
