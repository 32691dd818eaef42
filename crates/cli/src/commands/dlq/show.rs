//! `conveyor dlq show`.

use conveyor::Names;
use conveyor::dead_letter::{DeadLetter, DeadLetterQueue, Filter};

use super::{amqp, or_dash};

pub(crate) async fn run(
    service: &str,
    limit: usize,
    raw: bool,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::open(&amqp(), &Names::default(), service).await?;
    let letters = queue.hold_all().await;
    let queue_name = queue.queue().to_owned();
    queue.release().await;
    let letters = letters?;
    let matching: Vec<&DeadLetter> = letters
        .iter()
        .filter(|letter| filter.matches(letter))
        .collect();
    if json {
        let shown: Vec<_> = matching
            .iter()
            .take(limit)
            .map(|letter| letter.to_json(raw))
            .collect();
        let report = serde_json::json!({
            "queue": queue_name, "total": letters.len(), "matching": matching.len(), "dead_letters": shown,
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "{queue_name}: {} dead letters, {} matching, showing {}",
        letters.len(),
        matching.len(),
        matching.len().min(limit)
    );
    for letter in matching.iter().take(limit) {
        println!();
        print_letter(letter, raw);
    }
    Ok(())
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
