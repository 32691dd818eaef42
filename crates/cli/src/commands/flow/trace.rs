//! `conveyor flow trace ID` and `conveyor flow stuck [FLOW]` (and `conveyor saga trace|stuck`,
//! the order flow's under their first names): where runs are, and why.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use conveyor::AmqpConfig;
use flows::Flow;
use flows::map::FlowMap;
use flows::trace::{self as flow_trace, Sources, StuckReport, Trace};
use system::ServiceName;
use uuid::Uuid;

use super::flow_choice;
use crate::commands::dlq::args::parse_age;
use crate::commands::service_database;
use crate::terminal::printable;

/// How a trace or a report is read and printed.
#[derive(Debug, Args)]
pub(crate) struct Reading {
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
    /// Leave the broker out: no dead letters or queue depths (the databases and /readyz only).
    #[arg(long)]
    no_broker: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The run's id: the correlation id of its events (for the order flow, the order's id).
    id: Uuid,
    /// The flow the run belongs to; found from the id when left out (needed only when the
    /// id is a run of several flows).
    #[arg(long, value_parser = flow_choice())]
    flow: Option<String>,
    #[command(flatten)]
    reading: Reading,
}

/// Which runs `stuck` looks at, and how.
#[derive(Debug, Args)]
pub(crate) struct StuckOptions {
    /// Runs going for longer than this (90s, 5m, 2h).
    #[arg(long, value_parser = parse_age, default_value = "30s")]
    older_than: Duration,
    /// Diagnose at most this many, the oldest first; all are counted.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    reading: Reading,
}

#[derive(Debug, Args)]
pub(crate) struct StuckArgs {
    /// The flow whose runs to look at; every flow when left out.
    #[arg(value_parser = flow_choice())]
    flow: Option<String>,
    #[command(flatten)]
    options: StuckOptions,
}

/// How the answer names runs: `saga` keeps the order flow's own words (orders pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wording {
    Flow,
    Saga,
}

pub(crate) async fn trace_run(args: TraceArgs) -> anyhow::Result<()> {
    let flow = args.flow.as_deref().map(system::flow_named).transpose()?;
    trace(args.id, flow, &args.reading, Wording::Flow).await
}

/// The timeline of run `id` of `flow` (found from the id when `None`).
pub(crate) async fn trace(
    id: Uuid,
    flow: Option<&'static Flow>,
    reading: &Reading,
    wording: Wording,
) -> anyhow::Result<()> {
    let (sources, map) = sources(reading.no_broker).await?;
    let flow = match flow {
        Some(flow) => flow,
        None => only_flow_of(&sources, id).await?,
    };
    let Some(trace) = flow_trace::trace(&sources, &map, flow, id).await? else {
        let keeper = flow.runs.service;
        anyhow::bail!(
            "{keeper} has no {} {id}: check the id, and that {}_DATABASE_URL names the {keeper} database",
            flow.name,
            keeper.to_uppercase()
        );
    };
    if reading.json {
        print_json(&trace, wording)
    } else {
        print_trace(&trace);
        Ok(())
    }
}

/// `answer` as JSON; for `saga`, in the names its JSON had before flows (which scripts may
/// read): the run under `order`, a report's `pending` and `orders`, and no `flow`.
fn print_json<T: serde::Serialize>(answer: &T, wording: Wording) -> anyhow::Result<()> {
    let mut json = serde_json::to_value(answer)?;
    if wording == Wording::Saga {
        json = in_saga_words(json);
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

fn in_saga_words(mut json: serde_json::Value) -> serde_json::Value {
    if let Some(object) = json.as_object_mut() {
        object.remove("flow");
        for (now, before) in [("run", "order"), ("running", "pending"), ("runs", "orders")] {
            if let Some(field) = object.remove(now) {
                object.insert(before.to_owned(), field);
            }
        }
        if let Some(traces) = object
            .get_mut("orders")
            .and_then(serde_json::Value::as_array_mut)
        {
            for trace in traces.iter_mut() {
                *trace = in_saga_words(trace.take());
            }
        }
    }
    json
}

/// The one flow with a run `id`.
async fn only_flow_of(sources: &Sources, id: Uuid) -> anyhow::Result<&'static Flow> {
    let found = flow_trace::flows_of(sources, system::all_flows(), id).await?;
    match found[..] {
        [flow] => Ok(flow),
        [] => anyhow::bail!(
            "no flow has a run {id}: check the id, and that each flow's keeper's database is configured (<SERVICE>_DATABASE_URL; `conveyor flow list` names the flows)"
        ),
        _ => {
            let names: Vec<&str> = found.iter().map(|flow| flow.name).collect();
            anyhow::bail!(
                "{id} is a run of several flows ({}): choose one with --flow",
                names.join(", ")
            )
        }
    }
}

pub(crate) async fn stuck_runs(args: StuckArgs) -> anyhow::Result<()> {
    let flows = match args.flow.as_deref() {
        Some(name) => vec![system::flow_named(name)?],
        None => system::all_flows().to_vec(),
    };
    stuck(&flows, &args.options, Wording::Flow).await
}

/// The runs of `flows` going for longer than asked, each diagnosed; fails when there is any,
/// or any parked outbox row.
pub(crate) async fn stuck(
    flows: &[&'static Flow],
    options: &StuckOptions,
    wording: Wording,
) -> anyhow::Result<()> {
    let (sources, map) = sources(options.reading.no_broker).await?;
    let limit = i64::from(options.limit);
    let mut reports = Vec::new();
    for flow in flows {
        reports.push(flow_trace::stuck(&sources, &map, flow, options.older_than, limit).await?);
    }
    match (&reports[..], options.reading.json) {
        ([report], true) => print_json(report, wording)?,
        (_, true) => print_json(&reports, wording)?,
        (_, false) => reports
            .iter()
            .for_each(|report| print_stuck(report, wording)),
    }
    if let Some(notes) = reports
        .iter()
        .find_map(|report| report.runs.first().map(|trace| &trace.notes))
        .filter(|_| !options.reading.json)
    {
        for note in notes {
            println!("note: {}", printable(note));
        }
    }
    for report in &reports {
        anyhow::ensure!(report.running == 0, "{}", stuck_count(report, wording));
    }
    let parked: i64 = reports.first().map_or(0, |report| {
        report.parked.iter().map(|found| found.summary.count).sum()
    });
    anyhow::ensure!(
        parked == 0,
        "{parked} events parked in the services' outboxes"
    );
    Ok(())
}

/// "3 orders pending for longer than 30s" (saga), "3 runs of order going for longer than
/// 30s" (flow).
fn stuck_count(report: &StuckReport, wording: Wording) -> String {
    match wording {
        Wording::Saga => format!(
            "{} {}s pending for longer than {}s",
            report.running, report.flow, report.older_than_seconds
        ),
        Wording::Flow => format!(
            "{} runs of {} going for longer than {}s",
            report.running, report.flow, report.older_than_seconds
        ),
    }
}

/// Every service's database, the broker (its queues under `CONVEYOR_NAME_PREFIX`, as the
/// services name them) and each service's URL, from the environment.
async fn sources(no_broker: bool) -> anyhow::Result<(Sources, FlowMap)> {
    let config = system::SystemConfig::from_env()?;
    let names = config.names.clone();
    let pools = futures_util::future::try_join_all(
        ServiceName::all().map(|service| service_database(&config, service)),
    )
    .await?;
    let databases: BTreeMap<&'static str, sqlx::PgPool> = ServiceName::all()
        .map(ServiceName::as_str)
        .zip(pools)
        .collect();
    let urls = crate::commands::service_urls()
        .into_iter()
        .map(|(service, url)| (service.as_str(), url))
        .collect();
    let sources = Sources {
        databases,
        amqp: (!no_broker).then(|| AmqpConfig::from_env("conveyor flow trace")),
        names: names.clone(),
        urls,
    };
    Ok((sources, system::flow_map(&names)?))
}

fn print_trace(trace: &Trace) {
    let run = &trace.run;
    let finished = match (run.finished_at, run.deadline_at) {
        (Some(at), _) => format!("finished {}", at.format("%H:%M:%S%.3f")),
        (None, Some(at)) => format!("deadline {}", at.format("%H:%M:%S%.3f")),
        (None, None) => "no deadline waits in the schedule".to_owned(),
    };
    let reason = run
        .reason
        .as_deref()
        .map_or_else(String::new, |reason| format!(" ({reason})"));
    println!(
        "{} {}  {}{reason}  created {}  {finished}",
        trace.flow,
        run.id,
        run.status,
        run.created_at.format("%Y-%m-%d %H:%M:%S%.3f"),
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
    // As wide as the longest type shown (`payment.return-refunded`), 20 at least.
    let width = trace
        .events
        .iter()
        .map(|event| event.event_type.len())
        .fold(20, usize::max);
    println!(
        "{:<12}  {:<width$}  {:<9}  {:<9}  OUTCOME",
        "TIME", "EVENT", "FROM", "TO"
    );
    for event in &trace.events {
        let time = event.created_at.format("%H:%M:%S%.3f");
        let sent = event.publication();
        if event.handlers.is_empty() {
            println!(
                "{time:<12}  {:<width$}  {:<9}  {:<9}  end of its path{sent}",
                event.event_type, event.emitted_by, "-"
            );
        }
        for handling in &event.handlers {
            println!(
                "{time:<12}  {:<width$}  {:<9}  {:<9}  {}{sent}",
                event.event_type,
                event.emitted_by,
                handling.service,
                printable(&handling.outcome.describe())
            );
        }
    }
    for note in &trace.notes {
        println!("note: {}", printable(note));
    }
}

fn print_stuck(report: &StuckReport, wording: Wording) {
    if !report.runs.is_empty() {
        println!(
            "{:<36}  {:>7}  {:<34}  LIKELY REASON",
            report.flow.to_uppercase(),
            "AGE",
            "WAITS ON"
        );
    }
    for trace in &report.runs {
        let age = chrono::Utc::now() - trace.run.created_at;
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
            trace.run.id,
            age.num_seconds(),
            printable(reason)
        );
    }
    let shown = report.runs.len();
    println!(
        "{}{}.",
        stuck_count(report, wording),
        if i64::try_from(shown).unwrap_or(i64::MAX) < report.running {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::in_saga_words;

    #[test]
    fn saga_answers_in_the_names_its_json_had_before_flows() {
        let report = json!({
            "flow": "order",
            "older_than_seconds": 30,
            "running": 1,
            "runs": [{ "flow": "order", "run": { "id": "x" }, "events": [] }],
            "parked": [],
        });
        let before = json!({
            "older_than_seconds": 30,
            "pending": 1,
            "orders": [{ "order": { "id": "x" }, "events": [] }],
            "parked": [],
        });
        assert_eq!(in_saga_words(report), before);
    }
}
