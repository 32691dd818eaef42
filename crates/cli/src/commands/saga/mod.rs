//! `conveyor saga reconcile|trace|stuck`: the order saga read straight from the services'
//! records. `reconcile` compares finished orders with what payments, inventory and shipping
//! hold for them; `trace` and `stuck` are `conveyor flow trace|stuck` for the order flow,
//! in its own words (orders pending).

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use system::ServiceName;
use system::reconcile::{self, Databases, ReconcileOptions, ReconcileReport};
use uuid::Uuid;

use super::flow::reconcile::WindowArgs;
use super::flow::trace::{Reading, StuckOptions, Wording, stuck, trace};
use super::{service_database, show};

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
    /// periodic job that alerts.
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

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let databases = databases().await?;
    let options = ReconcileOptions {
        settled_for: args.window.settled_for,
        since: args.window.since,
    };
    let total = reconcile::count(&databases, options)
        .await
        .context("cannot count the finished orders")?;
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} orders compared {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if args.json {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let report = reconcile::reconcile(&databases, options, |done| progress.set_position(done))
        .await
        .context("reading the services' records failed")?;
    progress.finish_and_clear();
    show(args.json, &report, print_report)?;
    anyhow::ensure!(
        report.found == 0,
        "{} discrepancies between orders and the other services' records: see `conveyor dlq list` \
         for the dead-lettered events that would have settled them, and replay them once their cause is fixed",
        report.found
    );
    Ok(())
}

fn print_report(report: &ReconcileReport) {
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

/// A small pool on each service database the comparison reads.
async fn databases() -> anyhow::Result<Databases> {
    let config = system::SystemConfig::from_env()?;
    let (orders, payments, inventory, shipping) = tokio::try_join!(
        service_database(&config, ServiceName::ORDERS),
        service_database(&config, ServiceName::PAYMENTS),
        service_database(&config, ServiceName::INVENTORY),
        service_database(&config, ServiceName::SHIPPING),
    )?;
    Ok(Databases {
        orders,
        payments,
        inventory,
        shipping,
    })
}
