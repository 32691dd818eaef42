//! `conveyor schema check|asyncapi|validate`: the event contract's tools.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Subcommand;
use events_schema::compat::{SchemaSet, breaking_changes};
use events_schema::{EventContract, asyncapi, to_yaml};
use serde_json::Value;

use crate::generated;

#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Fail, naming the event and field, on schema changes that would break an existing
    /// producer or consumer: a field removed or renamed, a type changed, a new required
    /// field, an enum value removed, a constraint tightened, a version file removed.
    /// Adding an optional field or a new version file passes.
    Check {
        /// The git revision to compare with; default: the merge base with main, or the last
        /// tag when on main itself.
        #[arg(long)]
        against: Option<String>,
        /// The schemas folder.
        #[arg(long, default_value = "events-schema/schemas")]
        dir: PathBuf,
    },
    /// Write the AsyncAPI 3.0 document of every event, and who sends and receives it.
    Asyncapi {
        #[arg(long, default_value = "events-schema/asyncapi.yaml")]
        output: PathBuf,
        /// Write nothing; fail if the file differs from what would be generated.
        #[arg(long)]
        check: bool,
    },
    /// Check one event (a CloudEvents JSON envelope, from a file or `-` for stdin) against
    /// the contract, as the publisher and consumers do.
    Validate {
        #[arg(default_value = "-")]
        file: PathBuf,
    },
}

pub(crate) fn run(command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Check { against, dir } => check(against, &dir),
        SchemaCommand::Asyncapi { output, check } => write_asyncapi(&output, check),
        SchemaCommand::Validate { file } => validate(&file),
    }
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("cannot run git: is it installed?")?;
    anyhow::ensure!(
        output.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn default_revision(dir: &Path) -> anyhow::Result<String> {
    let head = git(dir, &["rev-parse", "HEAD"])?;
    if let Ok(base) = git(dir, &["merge-base", "HEAD", "main"])
        && base != head
    {
        return Ok(base);
    }
    Ok(git(dir, &["describe", "--tags", "--abbrev=0"]).unwrap_or(head))
}

/// `<type>/v<N>.json` → (type, N).
fn key_of(relative: &str) -> Option<(String, u32)> {
    let (event_type, file) = relative.split_once('/')?;
    let version = file
        .strip_prefix('v')?
        .strip_suffix(".json")?
        .parse()
        .ok()?;
    Some((event_type.to_owned(), version))
}

fn schemas_on_disk(dir: &Path) -> anyhow::Result<SchemaSet> {
    let mut set = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the schemas folder {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let path = file?.path();
            let relative = format!(
                "{}/{}",
                entry.file_name().to_string_lossy(),
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            if let Some(key) = key_of(&relative) {
                let text = std::fs::read_to_string(&path)?;
                let schema = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", path.display()))?;
                set.insert(key, schema);
            }
        }
    }
    Ok(set)
}

fn schemas_at(dir: &Path, revision: &str) -> anyhow::Result<SchemaSet> {
    let mut set = BTreeMap::new();
    let listing = git(dir, &["ls-tree", "-r", "--name-only", revision, "."])?;
    for relative in listing.lines() {
        if let Some(key) = key_of(relative) {
            let text = git(dir, &["show", &format!("{revision}:./{relative}")])?;
            let schema: Value = serde_json::from_str(&text)
                .with_context(|| format!("{relative} at {revision} is not valid JSON"))?;
            set.insert(key, schema);
        }
    }
    Ok(set)
}

fn check(against: Option<String>, dir: &Path) -> anyhow::Result<()> {
    let revision = match against {
        Some(revision) => revision,
        None => default_revision(dir)?,
    };
    let old = schemas_at(dir, &revision)?;
    let new = schemas_on_disk(dir)?;
    let changes = breaking_changes(&old, &new);
    if changes.is_empty() {
        println!(
            "{} schemas checked against {revision} ({} there): no breaking changes.",
            new.len(),
            old.len()
        );
        return Ok(());
    }
    for change in &changes {
        eprintln!("breaking: {change}");
    }
    anyhow::bail!(
        "{} breaking schema changes against {revision}: publish the change as a new version file (v<N+1>.json) instead",
        changes.len()
    )
}

fn asyncapi_text() -> anyhow::Result<String> {
    Ok(to_yaml(&asyncapi::document(&system::service_events()?)))
}

fn write_asyncapi(output: &Path, check: bool) -> anyhow::Result<()> {
    generated::write_or_check(output, &asyncapi_text()?, check, "conveyor schema asyncapi")
}

fn validate(file: &Path) -> anyhow::Result<()> {
    let mut body = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body)?;
    } else {
        body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    let envelope = conveyor::Envelope::from_bytes(&body)?;
    EventContract::shared()?.validate_envelope(&envelope)?;
    println!(
        "ok: {} {} is valid",
        envelope.event_type,
        envelope.dataschema.as_deref().unwrap_or("v1")
    );
    Ok(())
}
