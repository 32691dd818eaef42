//! `conveyor saga reconcile|trace|stuck`: `conveyor flow reconcile|trace|stuck` for the
//! order flow, in the saga's own words (orders pending, discrepancies).

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use flows::reconcile::{Finding, Report, Window};
use serde::Serialize;
use uuid::Uuid;

use super::flow::reconcile::{self, WindowArgs};
use super::flow::trace::{Reading, StuckOptions, Wording, stuck, trace};
use super::show;

/// The saga's flow.
fn order_flow() -> anyhow::Result<&'static flows::Flow> {
    system::flow_named("order")
}

#[derive(Debug, Subcommand)]
pub(crate) enum SagaCommand {
    /// Compare every finished order with the other services' records: a confirmed order has
    /// its payment captured in full, its stock reserved and its shipment scheduled; a
    /// cancelled one has no captured payment, no reserved stock and no scheduled shipment.
    /// Reads the databases at <SERVICE>_DATABASE_URL (orders, payments, inventory,
    /// shipping). Lists each discrepancy and exits 1 when there is any, so it can run as a
    /// periodic job that alerts. It is `conveyor flow reconcile order`, each finding told as
    /// a sentence.
    Reconcile(ReconcileArgs),
    /// One order's timeline across every service, from the services' own records: each
    /// event, who emitted it, when it was published, and what each service that handles it
    /// made of it (handled, dead-lettered with the reason and attempts, or not yet). For an
    /// order still pending: the step it waits on, since when, and the likely reason (a dead
    /// letter, a retry pending, a service not ready or not consuming, a backlog, a stuck
    /// relay, a passed deadline). Reads <SERVICE>_DATABASE_URL of every service, the broker
    /// at AMQP_URL and each service's /readyz at <SERVICE>_URL. Exits 1 for an unknown order.
    Trace(TraceArgs),
    /// Every order pending longer than --older-than, oldest first, each with the step it
    /// waits on and the likely reason, as `trace` finds them, and each service's count of
    /// parked outbox events (the broker will never take them as they are; see `conveyor
    /// outbox`). Exits 1 when there is any stuck order or parked event.
    Stuck(StuckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The order's id (as orders answered when it was placed).
    order_id: Uuid,
    #[command(flatten)]
    reading: Reading,
}

#[derive(Debug, Args)]
pub(crate) struct StuckArgs {
    #[command(flatten)]
    options: StuckOptions,
}

#[derive(Debug, Args)]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    window: WindowArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: SagaCommand) -> anyhow::Result<()> {
    match command {
        SagaCommand::Reconcile(args) => reconcile(args).await,
        SagaCommand::Trace(args) => {
            trace(
                args.order_id,
                Some(order_flow()?),
                &args.reading,
                Wording::Saga,
            )
            .await
        }
        SagaCommand::Stuck(args) => stuck(&[order_flow()?], &args.options, Wording::Saga).await,
    }
}

/// `flow reconcile order`, reported in the saga's words: orders and the service whose
/// records disagree, each problem a sentence.
async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let flow = order_flow()?;
    let databases = reconcile::databases(&[flow]).await?;
    let window = Window {
        settled_for: args.window.settled_for,
        since: args.window.since,
    };
    let report =
        SagaReport::from(reconcile::reconcile_one(flow, &databases, window, args.json).await?);
    show(args.json, &report, print_report)?;
    anyhow::ensure!(
        report.found == 0,
        "{} discrepancies between orders and the other services' records: see `conveyor dlq list` \
         for the dead-lettered events that would have settled them, and replay them once their cause is fixed",
        report.found
    );
    Ok(())
}

/// `saga reconcile`'s report, as it was before flows declared their agreements.
#[derive(Debug, Serialize)]
struct SagaReport {
    /// Finished orders compared.
    checked: u64,
    /// Discrepancies found, all of them counted.
    found: u64,
    /// The first 10,000 of them.
    discrepancies: Vec<Discrepancy>,
}

/// One way an order and a service's record of it disagree.
#[derive(Debug, Serialize)]
struct Discrepancy {
    order_id: Uuid,
    status: String,
    finished_at: DateTime<Utc>,
    service: &'static str,
    problem: String,
}

impl From<Report> for SagaReport {
    fn from(report: Report) -> Self {
        Self {
            checked: report.checked,
            found: report.found,
            discrepancies: report
                .findings
                .into_iter()
                .map(|finding| Discrepancy {
                    problem: problem(&finding),
                    order_id: finding.run_id,
                    status: finding.status,
                    finished_at: finding.finished_at,
                    service: finding.service,
                })
                .collect(),
        }
    }
}

/// A finding in words: "cancelled, but its payment is 500 EUR where nothing is owed".
fn problem(finding: &Finding) -> String {
    let text = |value: &Option<serde_json::Value>| match value {
        None => "nothing".to_owned(),
        // A text reads as itself, not as JSON in quotes.
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    format!(
        "{}, but its {} is {} where {} is owed",
        finding.status,
        finding.agreement,
        text(&finding.actual),
        text(&finding.expected)
    )
}

fn print_report(report: &SagaReport) {
    if !report.discrepancies.is_empty() {
        println!(
            "{:<36}  {:<9}  {:<20}  {:<9}  PROBLEM",
            "ORDER", "STATUS", "FINISHED", "SERVICE"
        );
    }
    for found in &report.discrepancies {
        println!(
            "{:<36}  {:<9}  {:<20}  {:<9}  {}",
            found.order_id,
            found.status,
            found.finished_at.format("%Y-%m-%d %H:%M:%S"),
            found.service,
            found.problem
        );
    }
    let shown = report.discrepancies.len() as u64;
    if report.found > shown {
        println!("… and {} more not shown", report.found - shown);
    }
    println!(
        "{} finished orders compared, {} discrepancies.",
        report.checked, report.found
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn finding(
        status: &str,
        expected: Option<serde_json::Value>,
        actual: Option<serde_json::Value>,
    ) -> Finding {
        Finding {
            run_id: Uuid::nil(),
            status: status.to_owned(),
            finished_at: Utc::now(),
            agreement: "payment",
            service: "payments",
            expected,
            actual,
        }
    }

    #[test]
    fn each_finding_reads_as_a_sentence_of_what_is_held_and_owed() {
        assert_eq!(
            problem(&finding("cancelled", None, Some(json!("500 EUR")))),
            "cancelled, but its payment is 500 EUR where nothing is owed"
        );
        assert_eq!(
            problem(&finding(
                "confirmed",
                Some(json!("500 EUR")),
                Some(json!("500 USD"))
            )),
            "confirmed, but its payment is 500 USD where 500 EUR is owed"
        );
        assert_eq!(
            problem(&finding("confirmed", Some(json!({ "TEA": 2 })), None)),
            "confirmed, but its payment is nothing where {\"TEA\":2} is owed"
        );
    }
}
