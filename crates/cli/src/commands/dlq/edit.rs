//! `conveyor dlq edit`: one dead letter's data, printed to edit, then sent back to its
//! service as a new event once it passes its schema.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use conveyor::Names;
use conveyor::dead_letter;
use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use serde_json::Value;

use super::amqp;

pub(crate) struct EditArgs {
    pub(crate) service: String,
    pub(crate) id: String,
    pub(crate) data: Option<PathBuf>,
    pub(crate) dry_run: bool,
}

pub(crate) async fn run(names: &Names, args: EditArgs) -> anyhow::Result<()> {
    let amqp = amqp();
    let letter = dead_letter::find(&amqp, names, &args.service, &args.id)
        .await?
        .with_context(|| {
            format!(
                "no dead letter {} is in {}: `conveyor dlq show {}` lists them",
                args.id,
                names.dead_letter_queue(&args.service),
                args.service
            )
        })?;
    let original = dead_letter::event_of(&letter)?;
    let Some(path) = &args.data else {
        // The data to edit, as the letter has it.
        println!("{}", serde_json::to_string_pretty(&original.data)?);
        return Ok(());
    };
    let data = read_data(path)?;
    let copy = dead_letter::edited_copy(&original, data.clone());
    check(&copy)?;
    let patch = dead_letter::json_patch(&original.data, &copy.data);
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&patch)?);
        println!(
            "Dry run: {} would go to {} as event {} (caused by {}); nothing was sent.",
            copy.event_type,
            names.service_queue(&args.service),
            copy.id,
            original.id
        );
        return Ok(());
    }
    let run_id = uuid::Uuid::now_v7();
    let mut record = AuditRecord {
        filters: serde_json::json!({ "id": args.id }),
        run_id: Some(run_id),
        patch: Some(patch),
        ..AuditRecord::new(
            AuditStatus::Started,
            "edit",
            &args.service,
            names.service_queue(&args.service),
            super::transfer::operator(),
        )
    };
    audit::append(&amqp, names, &record)
        .await
        .context("could not write the audit log, so nothing was sent")?;
    let sent = dead_letter::edit_and_retry(
        &amqp,
        names,
        &args.service,
        &args.id,
        data,
        run_id,
        |copy| check(copy).map_err(|error| error.to_string()),
    )
    .await;
    record.end_edit(&sent);
    audit::append(&amqp, names, &record).await?;
    let report = sent?;
    println!(
        "Sent {} {} to {} (caused by {}); the dead letter is gone.",
        report.event_type,
        report.copy_id,
        names.service_queue(&args.service),
        report.original_id
    );
    Ok(())
}

fn read_data(path: &Path) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("could not read the data from standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
    }
    let data: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    anyhow::ensure!(
        data.is_object(),
        "{} holds JSON, but not an object: an event's data is an object",
        path.display()
    );
    Ok(data)
}

/// The edited event against the contract: every field at fault named.
fn check(copy: &conveyor::Envelope) -> anyhow::Result<()> {
    let contract = events_schema::EventContract::shared()?;
    let event = serde_json::to_value(copy)?;
    contract.validate_event(&event).map_err(|violations| {
        let fields: Vec<String> = violations
            .violations
            .iter()
            .map(ToString::to_string)
            .collect();
        anyhow::anyhow!(
            "the edited event breaks its schema, so nothing was sent:\n  {}",
            fields.join("\n  ")
        )
    })
}
