//! `conveyor dlq replay|move|purge`: the matching dead letters go somewhere, the rest stay
//! in their queue in their order, and the audit log records who did what.

use std::time::Instant;

use clap::Args;
use conveyor::Names;
use conveyor::dead_letter::{DeadLetter, DeadLetterQueue, Destination, audit};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::args::FilterArgs;
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
    pub(crate) limit: Option<usize>,
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

/// Passes at most: a replay killed mid-transfer leaves a few messages that the broker gives
/// back only once the next reader lets go, so a transfer that moved anything looks again.
const MAX_PASSES: usize = 3;

/// One read of the dead-letter queue: what it holds and which of those match.
struct Pass {
    queue: DeadLetterQueue,
    letters: Vec<DeadLetter>,
    selected: Vec<usize>,
}

impl Pass {
    async fn open(
        service: &str,
        destination: &Destination,
        args: &TransferArgs,
        limit: usize,
    ) -> anyhow::Result<Self> {
        let queue = DeadLetterQueue::open(&amqp(), &Names::default(), service).await?;
        let letters = match queue.check_destination(destination).await {
            Ok(()) => queue.hold_all().await,
            Err(error) => Err(error),
        };
        let letters = match letters {
            Ok(letters) => letters,
            Err(error) => {
                queue.release().await;
                return Err(error.into());
            }
        };
        let filter = args.filters.to_filter();
        let selected = (0..letters.len())
            .filter(|&index| filter.matches(&letters[index]))
            .take(limit)
            .collect();
        Ok(Self {
            queue,
            letters,
            selected,
        })
    }

    fn selected(&self) -> Vec<&DeadLetter> {
        self.selected
            .iter()
            .map(|&index| &self.letters[index])
            .collect()
    }

    fn kept(&self) -> usize {
        self.letters.len() - self.selected.len()
    }
}

pub(crate) async fn run(
    service: &str,
    destination: Destination,
    args: &TransferArgs,
) -> anyhow::Result<()> {
    let amqp = amqp();
    let names = Names::default();
    let limit = args.limit.unwrap_or(usize::MAX);
    let target = match &destination {
        Destination::Replay => names.service_queue(service),
        Destination::Queue(queue) => queue.clone(),
        Destination::Purge => "(deleted)".to_owned(),
    };
    let mut pass = Pass::open(service, &destination, args, limit).await?;
    if args.dry_run {
        print_dry_run(
            verb(&destination),
            &pass.selected(),
            &target,
            pass.kept(),
            args.json,
        );
        pass.queue.release().await;
        return Ok(());
    }
    let mut ids: Vec<Option<String>> = pass
        .selected()
        .iter()
        .map(|letter| letter.id.clone())
        .collect();
    let record = json!({
        "operator": operator(), "command": verb(&destination), "service": service,
        "target": target, "filters": args.filters.to_filter().to_json(),
        "rate_per_second": args.rate, "limit": args.limit,
    });
    let mut started = record.clone();
    started["at"] = json!(chrono::Utc::now());
    started["status"] = json!("started");
    started["matched"] = json!(ids.len());
    started["ids"] = json!(ids);
    if let Err(error) = audit::append(&amqp, &names, &started).await {
        pass.queue.release().await;
        return Err(anyhow::Error::new(error)
            .context("could not write the audit log, so nothing was moved"));
    }
    let progress = progress_bar(ids.len(), args.json);
    let mut seconds = 0.0;
    let mut done = 0;
    let mut failure = None;
    for number in 1..=MAX_PASSES {
        let selected = pass.selected();
        let moved_any = !selected.is_empty();
        // Only the time spent moving counts toward the rate, not the reading between passes.
        let clock = Instant::now();
        let outcome = pass
            .queue
            .transfer(&selected, &destination, args.rate, |count| {
                progress.set_position((done + count) as u64)
            })
            .await;
        seconds += clock.elapsed().as_secs_f64();
        drop(selected);
        pass.queue.release().await;
        match outcome {
            Ok(count) => done += count,
            Err(error) => {
                failure = Some(anyhow::Error::new(error));
                break;
            }
        }
        if !moved_any || done >= limit || number == MAX_PASSES {
            break;
        }
        match Pass::open(service, &destination, args, limit - done).await {
            Ok(next) if !next.selected.is_empty() => {
                progress.inc_length(next.selected.len() as u64);
                ids.extend(next.selected().iter().map(|letter| letter.id.clone()));
                pass = next;
            }
            Ok(next) => {
                next.queue.release().await;
                break;
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    progress.finish_and_clear();
    let kept = dead_letters_left(service).await;
    let mut finished = record;
    finished["at"] = json!(chrono::Utc::now());
    finished["status"] = json!(if failure.is_some() {
        "failed"
    } else {
        "finished"
    });
    finished["matched"] = json!(ids.len());
    finished["done"] = json!(done);
    finished["ids"] = json!(ids);
    finished["seconds"] = json!(seconds);
    if let Some(error) = &failure {
        finished["error"] = json!(format!("{error:#}"));
    }
    let audited = audit::append(&amqp, &names, &finished).await;
    if let Some(error) = failure {
        return Err(error.context(format!(
            "stopped after {done} dead letters; the rest stay in {service}.dlq"
        )));
    }
    audited?;
    report(
        verb(&destination),
        service,
        done,
        &target,
        kept,
        seconds,
        args.json,
    );
    Ok(())
}

/// Messages left in the dead-letter queue (those that did not match).
async fn dead_letters_left(service: &str) -> usize {
    match DeadLetterQueue::open(&amqp(), &Names::default(), service).await {
        Ok(queue) => {
            let waiting = queue.waiting() as usize;
            queue.release().await;
            waiting
        }
        Err(_) => 0,
    }
}

/// Who ran the command, as `user@host`, for the audit log.
fn operator() -> Value {
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
    json!(format!("{user}@{host}"))
}

fn progress_bar(total: usize, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn print_dry_run(verb: &str, selected: &[&DeadLetter], target: &str, kept: usize, json: bool) {
    if json {
        let letters: Vec<_> = selected
            .iter()
            .map(|letter| letter.to_json(false))
            .collect();
        println!(
            "{}",
            json!({ "dry_run": true, "command": verb, "target": target, "would_move": selected.len(), "would_keep": kept, "dead_letters": letters })
        );
        return;
    }
    println!(
        "Dry run: {verb} would act on {} dead letters (to {target}); {kept} would stay. Nothing was changed.",
        selected.len()
    );
    for letter in selected {
        println!(
            "  {}  {}  {}  {}",
            or_dash(letter.id.as_deref()),
            or_dash(letter.event_type.as_deref()),
            or_dash(letter.error_kind.as_deref()),
            or_dash(letter.error.as_deref())
        );
    }
}

fn report(
    verb: &str,
    service: &str,
    done: usize,
    target: &str,
    kept: usize,
    seconds: f64,
    json: bool,
) {
    let rate = done as f64 / seconds.max(f64::EPSILON);
    if json {
        println!(
            "{}",
            json!({ "command": verb, "service": service, "done": done, "target": target, "kept": kept, "seconds": seconds, "per_second": rate })
        );
        return;
    }
    let past = match verb {
        "replay" => "Replayed",
        "move" => "Moved",
        _ => "Purged",
    };
    println!(
        "{past} {done} dead letters to {target} in {seconds:.2} s ({rate:.1}/s); {kept} stay in {service}.dlq in their order."
    );
}
