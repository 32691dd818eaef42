//! `conveyor dlq groups`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use conveyor::Names;
use conveyor::dead_letter::{DeadLetterQueue, Filter, Fingerprint, fingerprint};

use super::amqp;

struct Group {
    fingerprint: Fingerprint,
    count: usize,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

pub(crate) async fn run(service: &str, filter: &Filter, json: bool) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::open(&amqp(), &Names::default(), service).await?;
    let letters = queue.hold_all().await;
    queue.release().await;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for letter in letters?.iter().filter(|letter| filter.matches(letter)) {
        let print = fingerprint(letter);
        let group = groups.entry(print.id.clone()).or_insert_with(|| Group {
            fingerprint: print,
            count: 0,
            first: None,
            last: None,
        });
        group.count += 1;
        if let Some(at) = letter.failed_at {
            group.first = Some(group.first.map_or(at, |first| first.min(at)));
            group.last = Some(group.last.map_or(at, |last| last.max(at)));
        }
    }
    let mut ordered: Vec<Group> = groups.into_values().collect();
    ordered.sort_by(|a, b| b.count.cmp(&a.count).then(a.first.cmp(&b.first)));
    if json {
        let rows: Vec<_> = ordered
            .iter()
            .map(|group| {
                serde_json::json!({
                    "fingerprint": group.fingerprint.id, "count": group.count,
                    "error_kind": group.fingerprint.error_kind, "type": group.fingerprint.event_type,
                    "error": group.fingerprint.masked_error, "first_seen": group.first, "last_seen": group.last,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "service": service, "groups": rows })
        );
        return Ok(());
    }
    if ordered.is_empty() {
        println!("No dead letters in {service}.dlq match.");
    }
    for group in &ordered {
        let time = |at: Option<DateTime<Utc>>| {
            at.map_or_else(
                || "-".to_owned(),
                |at| at.format("%Y-%m-%d %H:%M:%S").to_string(),
            )
        };
        println!(
            "{:>6} x {service}: {}: {}  [{}]  fingerprint {}  first {}  last {}",
            group.count,
            group.fingerprint.error_kind,
            group.fingerprint.masked_error,
            group.fingerprint.event_type,
            group.fingerprint.id,
            time(group.first),
            time(group.last),
        );
    }
    Ok(())
}
