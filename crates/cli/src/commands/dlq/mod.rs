//! `conveyor dlq`: the operators' dead-letter workflow, on the queues `CONVEYOR_NAME_PREFIX`
//! names (read once here and passed to each subcommand).

pub(crate) mod args;
mod audit_log;
mod edit;
mod groups;
mod list;
mod show;
mod transfer;

use clap::Subcommand;
use conveyor::Names;

use args::{FilterArgs, parse_rate, parse_service};

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Every <service>.dlq with its message count, how many a reader holds now, and its
    /// oldest failure.
    ///
    /// Like every dlq subcommand, it works on the queues of CONVEYOR_NAME_PREFIX's names
    /// (<prefix>.<service>.dlq when it is set), as the services do.
    ///
    /// Finds the queues through the RabbitMQ management API (RABBITMQ_MANAGEMENT_URL, default
    /// http://127.0.0.1:15672, with AMQP_URL's credentials and vhost); counts come from the
    /// broker, so listing reads no dead letter but the oldest of each queue.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The dead letters of one service: ids, type, error kind and error, attempts, failure
    /// time, correlation id and body.
    ///
    /// Reading holds the messages and then releases them: nothing is lost or reordered. The
    /// queue streams past in bounded memory, whatever its size; only the letters shown are
    /// kept. Exits non-zero when another reader holds part of the queue.
    Show {
        #[arg(value_parser = parse_service)]
        service: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print bodies as received rather than pretty-printed.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        filters: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Dead letters grouped by failure fingerprint (error kind, event type, and the error with
    /// ids and numbers masked), with counts and first and last failure.
    Groups {
        #[arg(value_parser = parse_service)]
        service: String,
        #[command(flatten)]
        filters: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Send matching dead letters back to <service>.events, so only the consumer that failed
    /// sees them again. Each copy is confirmed before its dead letter is removed: a replay
    /// killed at any moment loses nothing (the consumer's inbox absorbs a copy sent twice).
    ///
    /// The inbox remembers handled events for 14 days (the relay's inbox retention). A dead
    /// letter whose event was handled once and is replayed after that is handled again as if
    /// new; a letter that was never handled (the usual case) is unaffected.
    Replay {
        #[arg(value_parser = parse_service)]
        service: String,
        #[command(flatten)]
        transfer: transfer::TransferArgs,
    },
    /// Move matching dead letters to another existing queue (a parking lot, say).
    Move {
        #[arg(value_parser = parse_service)]
        service: String,
        /// The queue to move them to; it must exist.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        transfer: transfer::TransferArgs,
    },
    /// Delete matching dead letters for good. Needs --yes (or --dry-run to see what would go).
    Purge {
        #[arg(value_parser = parse_service)]
        service: String,
        /// Confirms that the matching dead letters are to be deleted.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        transfer: transfer::TransferArgs,
    },
    /// Edit one dead letter's data and send it back to <service> as a new event.
    ///
    /// Without --data, prints the letter's data to edit. With it, the edited event must pass
    /// its schema (each field at fault is named, and nothing is sent); then it goes to
    /// <service>.events with a new event id, the original as its cause, and the same type,
    /// source, subject and flow. The copy is confirmed before the dead letter is removed, and
    /// its id comes from the original's and the new data, so the same edit run again after a
    /// crash is dropped by the service's inbox: one effect. The audit log holds the change as
    /// a JSON Patch.
    Edit {
        #[arg(value_parser = parse_service)]
        service: String,
        /// The dead letter's event id (`conveyor dlq show` lists them).
        id: String,
        /// The event's new data: a JSON file, or - for standard input.
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Check the edit and print its JSON Patch; send nothing.
        #[arg(long, requires = "data")]
        dry_run: bool,
    },
    /// The audit log: who replayed, moved or purged what, when, with which filters, how many
    /// and a SHA-256 of the ids moved (in order, one per line).
    Audit {
        /// Show the newest this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: DlqCommand) -> anyhow::Result<()> {
    let names = Names::from_env()?;
    let names = &names;
    match command {
        DlqCommand::List { json } => list::run(names, json).await,
        DlqCommand::Show {
            service,
            limit,
            raw,
            filters,
            json,
        } => show::run(names, &service, limit, raw, &filters.to_filter(), json).await,
        DlqCommand::Groups {
            service,
            filters,
            json,
        } => groups::run(names, &service, &filters.to_filter(), json).await,
        DlqCommand::Replay { service, transfer } => {
            transfer::run(
                names,
                &service,
                conveyor::dead_letter::Destination::Replay,
                &transfer,
            )
            .await
        }
        DlqCommand::Move {
            service,
            to,
            transfer,
        } => {
            transfer::run(
                names,
                &service,
                conveyor::dead_letter::Destination::Queue(to),
                &transfer,
            )
            .await
        }
        DlqCommand::Purge {
            service,
            yes,
            transfer,
        } => {
            anyhow::ensure!(
                yes || transfer.dry_run,
                "purge deletes dead letters for good: add --yes to go ahead, or --dry-run to see what would go"
            );
            transfer::run(
                names,
                &service,
                conveyor::dead_letter::Destination::Purge,
                &transfer,
            )
            .await
        }
        DlqCommand::Edit {
            service,
            id,
            data,
            dry_run,
        } => {
            let args = edit::EditArgs {
                service,
                id,
                data,
                dry_run,
            };
            edit::run(names, args).await
        }
        DlqCommand::Audit { limit, json } => audit_log::run(names, limit, json).await,
    }
}

fn amqp() -> conveyor::AmqpConfig {
    conveyor::AmqpConfig::from_env("conveyor dlq")
}

/// An error after the report when a read missed letters (another reader took them
/// meanwhile), so the partial answer cannot pass for a whole one in a script.
fn partial_read(queue: &str, summary: conveyor::dead_letter::ReadSummary) -> anyhow::Result<()> {
    anyhow::ensure!(
        summary.complete(),
        "read only {} of the {} dead letters in {queue}: another reader took the rest meanwhile, so the figures above are partial; run this again",
        summary.read,
        summary.waiting
    );
    Ok(())
}

/// A header's value as an operator's terminal may show it, or `-`.
fn or_dash(value: Option<&str>) -> std::borrow::Cow<'_, str> {
    crate::terminal::printable(value.unwrap_or("-"))
}
