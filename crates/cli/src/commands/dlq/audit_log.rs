//! `conveyor dlq audit`.

use conveyor::Names;
use conveyor::dead_letter::audit;

use super::amqp;

pub(crate) async fn run(limit: Option<usize>, json: bool) -> anyhow::Result<()> {
    let records = audit::read(&amqp(), &Names::default()).await?;
    let skip = limit.map_or(0, |limit| records.len().saturating_sub(limit));
    let shown = &records[skip..];
    if json {
        println!("{}", serde_json::Value::Array(shown.to_vec()));
        return Ok(());
    }
    if shown.is_empty() {
        println!("The audit log is empty: no replay, move or purge has run.");
    }
    for record in shown {
        let text = |key: &str| record[key].as_str().unwrap_or("-").to_owned();
        println!(
            "{}  {}  {} {}  -> {}  status {}  matched {}  done {}  filters {}",
            text("at"),
            text("operator"),
            text("command"),
            text("service"),
            text("target"),
            text("status"),
            record["matched"],
            record
                .get("done")
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            record["filters"],
        );
    }
    Ok(())
}
