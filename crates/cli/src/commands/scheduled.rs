//! `conveyor scheduled list`: the events each service scheduled for later (`Outbox::add_at`,
//! `Outbox::add_after`), earliest first, and those due but not yet on their way.

use clap::{Args, Subcommand};
use conveyor::scheduled::{self, ScheduledRow, ScheduledSummary};
use system::ServiceName;

use super::service_database;
use crate::terminal::printable;

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduledCommand {
    /// List the scheduled events of every service (or of --service), earliest due first.
    /// A deadline (scheduled after a delay) moves on by time in which no relay could send;
    /// a calendar time does not. Due events are moved to the outbox by the service's
    /// leading relay within a moment: many due for long means no relay sends (the service
    /// down, or the broker away). Reads <SERVICE>_DATABASE_URL.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this service.
    #[arg(long, value_parser = super::service_choice())]
    service: Option<String>,
    /// Only events already due and not yet moved to the outbox.
    #[arg(long)]
    due: bool,
    /// Events listed per service, at most.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per service instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: ScheduledCommand) -> anyhow::Result<()> {
    match command {
        ScheduledCommand::List(args) => list(args).await,
    }
}

#[derive(serde::Serialize)]
struct ServiceScheduled {
    service: ServiceName,
    #[serde(flatten)]
    summary: ScheduledSummary,
    events: Vec<ScheduledRow>,
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let services = super::named_or_all(args.service.as_deref())?;
    let config = system::SystemConfig::from_env()?;
    for service in services {
        let pool = service_database(&config, service).await?;
        let summary = scheduled::summary(&pool).await?;
        let events = scheduled::list(&pool, i64::from(args.limit), args.due).await?;
        let found = ServiceScheduled {
            service,
            summary,
            events,
        };
        if args.json {
            println!("{}", serde_json::to_string(&found)?);
        } else {
            print_service(&found);
        }
    }
    Ok(())
}

fn print_service(found: &ServiceScheduled) {
    let summary = &found.summary;
    let next = summary.next_due_at.map_or_else(String::new, |at| {
        format!(", the next due {}", at.format("%Y-%m-%d %H:%M:%S"))
    });
    println!(
        "{}: {} scheduled, {} due{next}",
        found.service, summary.count, summary.due
    );
    for row in &found.events {
        let kind = if row.counts_watched_time_only {
            "deadline"
        } else {
            "calendar"
        };
        println!(
            "  {}  {:<22}  {:<38}  due {}  ({kind})",
            row.event_id,
            row.event_type,
            printable(row.subject.as_deref().unwrap_or("-")),
            row.deliver_at.format("%Y-%m-%d %H:%M:%S%.3f"),
        );
    }
}
