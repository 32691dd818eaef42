//! `conveyor dlq audit`.

use conveyor::Names;
use conveyor::dead_letter::audit::{self, AuditRecord};

use super::amqp;

pub(crate) async fn run(names: &Names, limit: usize, json: bool) -> anyhow::Result<()> {
    let log = audit::read(&amqp(), names, limit).await?;
    if json {
        println!("{}", serde_json::to_value(&log.records)?);
        return Ok(());
    }
    if log.total == 0 {
        println!("The audit log is empty: no replay, move or purge has run.");
    }
    for record in &log.records {
        print_record(record);
    }
    let older = log.total - log.records.len() as u64 - log.unreadable;
    if older > 0 {
        println!("({older} older records not shown; --limit shows more)");
    }
    if log.unreadable > 0 {
        println!(
            "({} messages in the audit queue are not audit records)",
            log.unreadable
        );
    }
    Ok(())
}

fn print_record(record: &AuditRecord) {
    let count = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let status = serde_json::to_value(record.status).unwrap_or_default();
    println!(
        "{}  {}  {} {}  -> {}  status {}  done {}  came back {}  filters {}  ids sha256 {}",
        record.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        crate::terminal::printable(&record.operator),
        record.command,
        record.service,
        crate::terminal::printable(&record.target),
        status.as_str().unwrap_or("-"),
        count(record.done),
        count(record.came_back),
        record.filters,
        record.ids_sha256.as_deref().unwrap_or("-"),
    );
    if let Some(mode) = &record.mode {
        println!("    mode: {}", crate::terminal::printable(mode));
    }
    if let Some(outcome) = &record.outcome {
        println!("    outcome: {}", crate::terminal::printable(outcome));
    }
    if let Some(error) = &record.error {
        println!("    error: {}", crate::terminal::printable(error));
    }
}
