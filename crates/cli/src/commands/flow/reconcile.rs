//! `conveyor flow reconcile [FLOW]`: each finished run against what its participants'
//! records hold, through the agreements its flow declares.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flows::Flow;
use flows::reconcile::{self, Databases, Report, Window};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use system::ServiceName;

use super::super::dlq::args::parse_age;
use super::super::{service_database, show};
use super::flow_choice;

#[derive(Debug, Args)]
pub(crate) struct ReconcileArgs {
    /// The flow whose runs to compare; every flow when left out.
    #[arg(value_parser = flow_choice())]
    flow: Option<String>,
    #[command(flatten)]
    window: WindowArgs,
    /// Print the reports as one JSON array.
    #[arg(long)]
    json: bool,
}

/// Which finished runs to compare (`flow reconcile`, `saga reconcile`).
#[derive(Debug, Args)]
pub(crate) struct WindowArgs {
    /// Leave out runs finished less than this long ago: their compensation may still be on
    /// its way (an event waits in a retry tier for up to 71 s).
    #[arg(long, value_parser = parse_age, default_value = "5m")]
    pub(crate) settled_for: Duration,
    /// Look at runs finished within this long.
    #[arg(long, value_parser = parse_age, default_value = "7d")]
    pub(crate) since: Duration,
}

pub(crate) async fn reconcile_runs(args: ReconcileArgs) -> anyhow::Result<()> {
    let chosen: Vec<&'static Flow> = match &args.flow {
        Some(name) => vec![system::flow_named(name)?],
        None => system::all_flows().to_vec(),
    };
    let databases = databases(&chosen).await?;
    let window = Window {
        settled_for: args.window.settled_for,
        since: args.window.since,
    };
    let mut reports = Vec::new();
    for flow in chosen {
        reports.push(reconcile_one(flow, &databases, window, args.json).await?);
    }
    show(args.json, &reports, |reports| {
        reports.iter().for_each(print_report)
    })?;
    let found: u64 = reports.iter().map(|report| report.found).sum();
    anyhow::ensure!(
        found == 0,
        "{found} runs disagree with their participants' records: see `conveyor dlq list` for \
         the dead-lettered events that would have settled them, and replay them once their cause is fixed"
    );
    Ok(())
}

pub(crate) async fn reconcile_one(
    flow: &'static Flow,
    databases: &Databases,
    window: Window,
    quiet: bool,
) -> anyhow::Result<Report> {
    let bounds = reconcile::bounds(flow, databases, window).await?;
    let total = reconcile::count(flow, databases, bounds).await?;
    let template = format!(
        "{{bar:40}} {{pos}}/{{len}} {} runs compared {{per_sec}} eta {{eta}}",
        flow.name
    );
    let progress = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if quiet {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let report = reconcile::reconcile(flow, databases, bounds, |done| progress.set_position(done))
        .await
        .with_context(|| format!("reconciling the {} flow failed", flow.name))?;
    progress.finish_and_clear();
    Ok(report)
}

fn print_report(report: &Report) {
    if !report.findings.is_empty() {
        println!(
            "{:<36}  {:<9}  {:<20}  {:<10}  {:<9}  EXPECTED → HOLDS",
            "RUN", "STATUS", "FINISHED", "AGREEMENT", "SERVICE"
        );
    }
    let text = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .map_or_else(|| "nothing".to_owned(), ToString::to_string)
    };
    for found in &report.findings {
        println!(
            "{:<36}  {:<9}  {:<20}  {:<10}  {:<9}  {} → {}",
            found.run_id,
            found.status,
            found.finished_at.format("%Y-%m-%d %H:%M:%S"),
            found.agreement,
            found.service,
            text(&found.expected),
            text(&found.actual),
        );
    }
    let shown = report.findings.len() as u64;
    if report.found > shown {
        println!("… and {} more not shown", report.found - shown);
    }
    println!(
        "{}: {} finished runs compared, {} disagreements.",
        report.flow, report.checked, report.found
    );
}

/// A small pool on the database of each service the flows' agreements read.
pub(crate) async fn databases(chosen: &[&'static Flow]) -> anyhow::Result<Databases> {
    let config = system::SystemConfig::from_env()?;
    let mut databases = Databases::new();
    for flow in chosen {
        let services = std::iter::once(flow.runs.service)
            .chain(flow.agreements.iter().map(|agreement| agreement.service));
        for service in services {
            if databases.contains_key(service) {
                continue;
            }
            let name = ServiceName::parse(service)?;
            databases.insert(service.to_owned(), service_database(&config, name).await?);
        }
    }
    Ok(databases)
}
