//! `conveyor reference`: the book's reference pages (every command, every setting, every
//! HTTP route, every flow, every alert's runbook) written from the code that parses, reads and serves them, so they cannot
//! drift; `--check` fails when a page differs (CI runs it).

mod pages;

use std::path::PathBuf;

use anyhow::Context as _;

use crate::generated;

/// Where the pages go, under the repository's root.
const FOLDER: &str = "docs/src/reference";

#[derive(Debug, clap::Args)]
pub(crate) struct ReferenceArgs {
    /// Write nothing; fail if a page differs from what the code makes (CI runs this).
    #[arg(long)]
    check: bool,
    /// The repository's root, where docs/ is.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

pub(crate) fn run(args: ReferenceArgs) -> anyhow::Result<()> {
    let folder = args.root.join(FOLDER);
    anyhow::ensure!(
        args.root.join("docs/src/SUMMARY.md").is_file(),
        "{} has no docs/src/SUMMARY.md: run in the repository's root, or name it with --root",
        args.root.display()
    );
    if !args.check {
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let pages = [
        ("commands.md", pages::commands()),
        ("settings.md", pages::settings()),
        ("routes.md", pages::routes()),
        ("flows.md", pages::flows()),
        (
            "runbooks.md",
            system::alerts::runbooks_markdown(&conveyor::Names::default()),
        ),
    ];
    // Every page is checked, so one run names all that drifted.
    let failures: Vec<String> = pages
        .into_iter()
        .filter_map(|(name, text)| {
            generated::write_or_check(&folder.join(name), &text, args.check, "conveyor reference")
                .err()
                .map(|error| format!("{error:#}"))
        })
        .collect();
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}
