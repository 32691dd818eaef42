//! What the generators read of the tree and how they write it: every change is made in
//! memory first, then written, a new file only if it still does not exist.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::edits::Edited;

const SERVICES_DIR: &str = "services";

/// One file to write: its path under the root, its whole new text, whether it is new, the
/// line it gained, and what that is (for the summary).
pub(crate) struct Change {
    pub(crate) path: String,
    pub(crate) text: String,
    pub(crate) created: bool,
    pub(crate) line: Option<usize>,
    pub(crate) what: String,
}

impl Change {
    pub(crate) fn edit(path: &str, edited: Edited, what: String) -> Self {
        Self {
            path: path.to_owned(),
            text: edited.text,
            created: false,
            line: Some(edited.line),
            what,
        }
    }

    pub(crate) fn new_file(path: String, text: String, what: String) -> Self {
        Self {
            path,
            text,
            created: true,
            line: None,
            what,
        }
    }

    /// `path:line` of the added line; a new file's path alone.
    pub(crate) fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Writes every change, a new file only if it still does not exist. On a failure, names
/// the files already written, to undo or finish by hand.
pub(crate) fn write(root: &Path, changes: &[Change]) -> anyhow::Result<()> {
    let mut written: Vec<&str> = Vec::new();
    for change in changes {
        write_one(&root.join(&change.path), change).with_context(|| {
            let done = if written.is_empty() {
                "none".to_owned()
            } else {
                written.join(", ")
            };
            format!("cannot write {}; written before it: {done}", change.path)
        })?;
        written.push(&change.path);
    }
    Ok(())
}

fn write_one(path: &Path, change: &Change) -> std::io::Result<()> {
    if !change.created {
        return std::fs::write(path, &change.text);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Not `fs::write`: a file that appeared since the checks is refused, not overwritten.
    std::fs::File::create_new(path)?.write_all(change.text.as_bytes())
}

/// Formats the new Rust files as `cargo fmt` would (with the tree's rustfmt.toml, if any),
/// since templates cannot know how long every name makes a line; says so if rustfmt is
/// missing, since CI's `cargo fmt --check` would then refuse them.
pub(crate) fn format_rust(root: &Path, changes: &[Change]) {
    let files: Vec<_> = changes
        .iter()
        .filter(|change| change.created && change.path.ends_with(".rs"))
        .map(|change| root.join(&change.path))
        .collect();
    if files.is_empty() {
        return;
    }
    let formatted = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(&files)
        .status();
    if !formatted.is_ok_and(|status| status.success()) {
        eprintln!(
            "warning: rustfmt did not format the new files: run `cargo fmt` before committing"
        );
    }
}

/// The changes, one line each: new or edited, where, and what.
pub(crate) fn print_changes(title: &str, changes: &[Change]) {
    println!("{title}");
    let locations: Vec<String> = changes.iter().map(Change::location).collect();
    let width = locations.iter().map(String::len).max().unwrap_or(0);
    for (change, location) in changes.iter().zip(&locations) {
        let verb = if change.created { "new   " } else { "edited" };
        println!("  {verb} {location:<width$}  {}", change.what);
    }
}

pub(crate) fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every `.rs` file of `dir` by module name, with its text.
pub(crate) fn modules(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let cannot = || {
        format!(
            "cannot read {}: run this from the repository's root, or name the root with --root",
            dir.display()
        )
    };
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(cannot)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "rs")
            && let Some(stem) = path.file_stem()
        {
            modules.push((stem.to_string_lossy().into_owned(), read(&path)?));
        }
    }
    modules.sort();
    Ok(modules)
}

/// Each service crate's `src/lib.rs` under services/, by path under the root, with its
/// text; none when the root has no services/ (a copy of events-schema/ alone).
pub(crate) fn service_crates(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let Ok(entries) = std::fs::read_dir(root.join(SERVICES_DIR)) else {
        return Ok(Vec::new());
    };
    let mut crates = Vec::new();
    for entry in entries {
        let dir = entry?.file_name();
        let relative = format!("{SERVICES_DIR}/{}/src/lib.rs", dir.to_string_lossy());
        let path = root.join(&relative);
        if path.is_file() {
            crates.push((relative, read(&path)?));
        }
    }
    crates.sort();
    Ok(crates)
}

/// The `SERVICE` a service crate's lib.rs declares.
pub(crate) fn service_name(text: &str) -> Option<String> {
    let rest = text.split("pub const SERVICE: &str = \"").nth(1)?;
    Some(rest.split('"').next()?.to_owned())
}

/// Whether `text` declares a struct named `name` (not merely one whose name starts so).
pub(crate) fn declares(text: &str, name: &str) -> bool {
    let needle = format!("struct {name}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[at + needle.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
    })
}
