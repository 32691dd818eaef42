//! `conveyor dlq show`.

use conveyor::Names;
use conveyor::dead_letter::{DeadLetter, DeadLetterQueue, Filter};

use super::{amqp, or_dash};

pub(crate) async fn run(
    names: &Names,
    service: &str,
    limit: usize,
    raw: bool,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::open(&amqp(), names, service).await?;
    let queue_name = queue.queue().to_owned();
    // Only the first `limit` matches are kept: the rest are counted and let go.
    let mut shown: Vec<DeadLetter> = Vec::new();
    let mut matching = 0_u64;
    let summary = queue
        .scan(|letter| {
            if filter.matches(&letter) {
                matching += 1;
                if shown.len() < limit {
                    shown.push(letter);
                }
            }
        })
        .await?;
    if json {
        let letters: Vec<_> = shown.iter().map(|letter| letter.to_json(raw)).collect();
        let report = serde_json::json!({
            "queue": queue_name, "total": summary.read, "waiting": summary.waiting,
            "complete": summary.complete(), "matching": matching, "dead_letters": letters,
        });
        println!("{report}");
    } else {
        println!(
            "{queue_name}: {} dead letters, {matching} matching, showing {}",
            summary.read,
            shown.len()
        );
        for letter in &shown {
            println!();
            print_letter(letter, raw);
        }
    }
    super::partial_read(&queue_name, summary)
}

fn print_letter(letter: &DeadLetter, raw: bool) {
    let failed_at = letter
        .failed_at
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    println!(
        "id {}  type {}  kind {}  attempts {}  failed at {}",
        or_dash(letter.id.as_deref()),
        or_dash(letter.event_type.as_deref()),
        or_dash(letter.error_kind.as_deref()),
        letter
            .attempts
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        or_dash(failed_at.as_deref()),
    );
    println!(
        "  correlation {}  replayed {} times  fingerprint {}",
        or_dash(letter.correlation_id.as_deref()),
        letter.replay_count,
        conveyor::dead_letter::fingerprint(letter).id
    );
    println!("  error: {}", or_dash(letter.error.as_deref()));
    let body = if raw {
        String::from_utf8_lossy(&letter.body).into_owned()
    } else {
        letter.body_pretty()
    };
    for line in body.lines() {
        println!("  | {}", crate::terminal::printable(line));
    }
}
