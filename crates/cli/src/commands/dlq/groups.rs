//! `conveyor dlq groups`.

use chrono::{DateTime, Utc};
use conveyor::Names;
use conveyor::dead_letter::{DeadLetterQueue, Filter, Group, Groups, MAX_GROUPS, ReadSummary};

use super::amqp;

pub(crate) async fn run(
    names: &Names,
    service: &str,
    filter: &Filter,
    json: bool,
) -> anyhow::Result<()> {
    let queue = DeadLetterQueue::open(&amqp(), names, service).await?;
    let queue_name = queue.queue().to_owned();
    let mut groups = Groups::default();
    let summary = queue
        .scan(|letter| {
            if filter.matches(&letter) {
                groups.add(&letter);
            }
        })
        .await?;
    print_groups(service, &queue_name, &groups, summary, json);
    super::partial_read(&queue_name, summary)
}

fn print_groups(
    service: &str,
    queue_name: &str,
    groups: &Groups,
    summary: ReadSummary,
    json: bool,
) {
    let ordered: Vec<Group> = groups.largest(MAX_GROUPS);
    let ungrouped = groups.ungrouped();
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
