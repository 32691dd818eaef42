//! `conveyor dlq replay|move|purge`: the matching dead letters go somewhere, the rest stay
//! in their queue in their order, and the audit log records who did what. The work itself
//! is the runtime's (`conveyor::dead_letter::transfer`); this is its command line.

use std::time::Duration;

use clap::Args;
use conveyor::Names;
use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use conveyor::dead_letter::{
    DeadLetter, DeadLetterQueue, Destination, Progress, TransferOptions, TransferReport,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::args::{FilterArgs, parse_window};
use super::{amqp, or_dash, parse_rate};

#[derive(Debug, Clone, Args)]
pub(crate) struct TransferArgs {
    #[command(flatten)]
    pub(crate) filters: FilterArgs,
    /// At most this many messages per second, like 200/s.
    #[arg(long, value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Act on at most this many matching dead letters (oldest first).
    #[arg(long)]
    pub(crate) limit: Option<u64>,
    /// The longest one pass holds the queue, like 10m. The broker closes a reader that holds
    /// a message longer than its consumer_timeout (30 minutes by default), so a long,
    /// rate-limited transfer gives everything back after each window and goes on from the
    /// head of the queue. Keep it well below the broker's consumer_timeout.
    #[arg(long, value_parser = parse_window, default_value = "10m")]
    pub(crate) window: Duration,
    /// Print what would be acted on and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long)]
    pub(crate) json: bool,
}

fn verb(destination: &Destination) -> &'static str {
    match destination {
        Destination::Replay => "replay",
        Destination::Queue(_) => "move",
        Destination::Purge => "purge",
    }
}

/// The dead letters a dry run lists at most (it counts them all).
const DRY_RUN_LISTED: usize = 1000;

pub(crate) async fn run(
    names: &Names,
    service: &str,
    destination: Destination,
    args: &TransferArgs,
) -> anyhow::Result<()> {
    let amqp = amqp();
    let dead_letter_queue = names.dead_letter_queue(service);
    let target = match &destination {
        Destination::Replay => names.service_queue(service),
        Destination::Queue(queue) => queue.clone(),
        Destination::Purge => "(deleted)".to_owned(),
    };
    if args.dry_run {
        return dry_run(names, service, &destination, &target, args).await;
    }
    let options = TransferOptions {
        filter: args.filters.to_filter(),
        destination: destination.clone(),
        rate: args.rate,
        limit: args.limit,
        window: args.window,
        run_id: uuid::Uuid::now_v7(),
        one_per_flow: false,
        keep_ids: false,
        stop_on_came_back: false,
        stop: None,
    };
    // Checked before the audit log hears of a run, so a mistyped target leaves no record.
    let queue = DeadLetterQueue::open(&amqp, names, service).await?;
    let checked = queue.check_destination(&destination).await;
    queue.release().await;
    checked?;
    let mut record = AuditRecord {
        filters: args.filters.to_filter().to_json(),
        run_id: Some(options.run_id),
        rate_per_second: args.rate,
        limit: args.limit,
        ..AuditRecord::new(
            AuditStatus::Started,
            verb(&destination),
            service,
            target.clone(),
            operator(),
        )
    };
    audit::append(&amqp, names, &record)
        .await
        .map_err(|error| {
            anyhow::Error::new(error).context("could not write the audit log, so nothing was moved")
        })?;
    let progress = progress_bar(args.json);
    let outcome = conveyor::dead_letter::transfer(&amqp, names, service, &options, |at| {
        show_progress(&progress, at)
    })
    .await;
    progress.finish_and_clear();
    record.end_transfer(&outcome);
    let (report, failure) = match outcome {
        Ok(report) => (report, None),
        Err(error) => (error.report.clone(), Some(error)),
    };
    let audited = audit::append(&amqp, names, &record).await;
    if let Some(error) = failure {
        return Err(anyhow::Error::new(error.source).context(format!(
            "stopped after {} dead letters; the rest stay in {dead_letter_queue}",
            report.done
        )));
    }
    audited?;
    let kept = dead_letters_left(names, service).await;
    print_report(&record, &report, &dead_letter_queue, kept, args.json);
    anyhow::ensure!(
        !report.stopped_early,
        "stopped early: letters that were counted in {dead_letter_queue} did not come (another reader took them?), so some that match may be left; run this again"
    );
    Ok(())
}

/// Messages left in the dead-letter queue (those that did not match, and any that came back).
async fn dead_letters_left(names: &Names, service: &str) -> Option<u64> {
    let queue = DeadLetterQueue::open(&amqp(), names, service).await.ok()?;
    let waiting = queue.waiting();
    queue.release().await;
    Some(waiting)
}

async fn dry_run(
    names: &Names,
    service: &str,
    destination: &Destination,
    target: &str,
    args: &TransferArgs,
) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::open(&amqp(), names, service).await?;
    let checked = queue.check_destination(destination).await;
    if let Err(error) = checked {
        queue.release().await;
        return Err(error.into());
    }
    let queue_name = queue.queue().to_owned();
    let filter = args.filters.to_filter();
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut listed: Vec<DeadLetter> = Vec::new();
    let mut matching = 0_u64;
    let summary = queue
        .scan(|letter| {
            if matching < limit && filter.matches(&letter) {
                matching += 1;
                if listed.len() < DRY_RUN_LISTED {
                    listed.push(letter);
                }
            }
        })
        .await?;
    let kept = summary.read - matching;
    print_dry_run(
        verb(destination),
        &listed,
        matching,
        target,
        kept,
        args.json,
    );
    super::partial_read(&queue_name, summary)
}

/// Who ran the command, as `user@host`, for the audit log.
pub(super) fn operator() -> String {
    let from_env = |names: &[&str]| {
        names.iter().find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
    };
    let from_command = |program: &str, args: &[&str]| {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let user = from_env(&["USER", "LOGNAME", "USERNAME"])
        .or_else(|| from_command("id", &["-un"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = from_env(&["HOSTNAME"])
        .or_else(|| from_command("hostname", &[]))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{host}")
}

fn progress_bar(hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("pass {prefix}: read {pos}/{len} {bar:30} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn show_progress(bar: &ProgressBar, at: Progress) {
    bar.set_prefix(at.pass.to_string());
    bar.set_length(at.waiting);
    bar.set_position(at.read);
    bar.set_message(format!("{} moved", at.done));
}

fn print_dry_run(
    verb: &str,
    listed: &[DeadLetter],
    matching: u64,
    target: &str,
    kept: u64,
    json: bool,
) {
    if json {
        let letters: Vec<_> = listed.iter().map(|letter| letter.to_json(false)).collect();
        println!(
            "{}",
            json!({
                "dry_run": true, "command": verb, "target": target, "would_move": matching,
                "would_keep": kept, "listed": letters.len(), "dead_letters": letters,
            })
        );
        return;
    }
    println!(
        "Dry run: {verb} would act on {matching} dead letters (to {target}); {kept} would stay. Nothing was changed."
    );
    for letter in listed {
        println!(
            "  {}  {}  {}  {}",
            or_dash(letter.id.as_deref()),
            or_dash(letter.event_type.as_deref()),
            or_dash(letter.error_kind.as_deref()),
            or_dash(letter.error.as_deref())
        );
    }
    if (listed.len() as u64) < matching {
        println!("  … and {} more", matching - listed.len() as u64);
    }
}

fn print_report(
    record: &AuditRecord,
    report: &TransferReport,
    dead_letter_queue: &str,
    kept: Option<u64>,
    json: bool,
) {
    let rate = report.done as f64 / report.seconds.max(f64::EPSILON);
    if json {
        println!(
            "{}",
            json!({
                "command": record.command, "service": record.service, "done": report.done,
                "target": record.target, "kept": kept, "came_back": report.came_back,
                "passes": report.passes, "seconds": report.seconds, "per_second": rate,
                "ids_sha256": report.ids_sha256, "run_id": record.run_id,
                "stopped_early": report.stopped_early,
            })
        );
        return;
    }
    let past = match record.command.as_str() {
        "replay" => "Replayed",
        "move" => "Moved",
        _ => "Purged",
    };
    let kept = kept.map_or_else(|| "?".to_owned(), |kept| kept.to_string());
    println!(
        "{past} {} dead letters to {} in {:.2} s ({rate:.1}/s); {kept} stay in {dead_letter_queue} in their order.",
        report.done, record.target, report.seconds
    );
    if report.came_back > 0 {
        println!(
            "{} of them failed again and came back; this run left them in place (a later run may replay them).",
            report.came_back
        );
    }
}
