//! `conveyor outbox parked|unpark`: the events a service's relay parked because the broker
//! will never take them as they are, listed and sent again once the cause is fixed.

use clap::{Args, Subcommand};
use conveyor::parked::{self, ParkedRow, Unpark};
use system::ServiceName;
use uuid::Uuid;

use super::service_database;
use crate::terminal::printable;

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// List the parked events of every service (or of --service), oldest first, with the
    /// broker's refusal. A relay parks an event only when the broker will never take it as
    /// it is (larger than the broker's max_message_size, say); a nack, a lost connection or
    /// a node that died never parks one. Reads <SERVICE>_DATABASE_URL. Exits 1 when any is
    /// parked, so it can run as a check that alerts.
    Parked(ParkedArgs),
    /// Send parked events again: they are unparked and the service's relay sends them at
    /// once (if the cause is not fixed, the broker refuses them again and they are parked
    /// again with the new error). Name the events with --event, or take all with --all.
    Unpark(UnparkArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ParkedArgs {
    /// Only this service.
    #[arg(long, value_parser = super::service_choice())]
    service: Option<String>,
    /// Events listed per service, at most.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per service instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UnparkArgs {
    /// The service whose outbox holds the events.
    #[arg(long, value_parser = super::service_choice())]
    service: String,
    /// An event's id (the envelope's id, as `outbox parked` shows it); repeat for several.
    #[arg(
        long = "event",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    events: Vec<Uuid>,
    /// Every parked event of the service.
    #[arg(long)]
    all: bool,
}

pub(crate) async fn run(command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::Parked(args) => list(args).await,
        OutboxCommand::Unpark(args) => unpark(args).await,
    }
}

#[derive(serde::Serialize)]
struct ServiceParked {
    service: ServiceName,
    #[serde(flatten)]
    summary: parked::ParkedSummary,
    events: Vec<ParkedRow>,
}

async fn list(args: ParkedArgs) -> anyhow::Result<()> {
    let services = super::named_or_all(args.service.as_deref())?;
    let config = system::SystemConfig::from_env()?;
    let mut total = 0;
    for service in services {
        let pool = service_database(&config, service).await?;
        let summary = parked::summary(&pool).await?;
        let events = parked::list(&pool, i64::from(args.limit)).await?;
        total += summary.count;
        let found = ServiceParked {
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
    anyhow::ensure!(total == 0, "{total} events are parked");
    Ok(())
}

fn print_service(found: &ServiceParked) {
    let oldest = found
        .summary
        .oldest_created_at
        .map_or_else(String::new, |at| {
            format!(", oldest from {}", at.format("%Y-%m-%d %H:%M:%S"))
        });
    println!("{}: {} parked{oldest}", found.service, found.summary.count);
    for row in &found.events {
        println!(
            "  {}  {:<22}  parked {}  after {} refusals: {}",
            row.event_id,
            row.event_type,
            row.parked_at.format("%Y-%m-%d %H:%M:%S"),
            row.attempts,
            printable(row.last_error.as_deref().unwrap_or("no error recorded"))
        );
    }
}

async fn unpark(args: UnparkArgs) -> anyhow::Result<()> {
    let service = ServiceName::parse(&args.service)?;
    let config = system::SystemConfig::from_env()?;
    let pool = service_database(&config, service).await?;
    let which = if args.all {
        Unpark::All
    } else {
        Unpark::Events(args.events.clone())
    };
    let unparked = parked::unpark(&pool, &which).await?;
    println!(
        "{} events of {service} unparked; its relay sends them now.",
        unparked.len()
    );
    let missing: Vec<&Uuid> = args
        .events
        .iter()
        .filter(|id| !unparked.contains(id))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "not parked in {service}'s outbox (sent already, or a wrong id or service): {}",
        missing
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
