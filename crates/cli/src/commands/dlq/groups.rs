//! `conveyor dlq groups`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use conveyor::Names;
use conveyor::dead_letter::{DeadLetterQueue, Filter, Fingerprint, ReadSummary, fingerprint};

use super::amqp;

struct Group {
    fingerprint: Fingerprint,
    count: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

/// Distinct groups kept at most; letters of further ones are counted together, so a queue
/// whose errors defeat the masking cannot use up the operator's memory.
const MAX_GROUPS: usize = 10_000;

pub(crate) async fn run(
    names: &Names,
    service: &str,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::open(&amqp(), names, service).await?;
    let queue_name = queue.queue().to_owned();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut ungrouped = 0_u64;
    let summary = queue
        .scan(|letter| {
            if !filter.matches(&letter) {
                return;
            }
            let print = fingerprint(&letter);
            if groups.len() >= MAX_GROUPS && !groups.contains_key(&print.id) {
                ungrouped += 1;
                return;
            }
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
        })
        .await?;
    print_groups(service, &queue_name, groups, ungrouped, summary, json);
    super::partial_read(&queue_name, summary)
}

fn print_groups(
    service: &str,
    queue_name: &str,
    groups: BTreeMap<String, Group>,
    ungrouped: u64,
    summary: ReadSummary,
    json: bool,
) {
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
            serde_json::json!({
                "service": service, "groups": rows, "ungrouped": ungrouped,
                "total": summary.read, "waiting": summary.waiting, "complete": summary.complete(),
            })
        );
        return;
    }
    if ordered.is_empty() {
        println!("No dead letters in {queue_name} match.");
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
    if ungrouped > 0 {
        println!(
            "{ungrouped:>6} x {service}: more than {MAX_GROUPS} kinds of failure; these were not grouped (narrow with a filter)"
        );
    }
}
