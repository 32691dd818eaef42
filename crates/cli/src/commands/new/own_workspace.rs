//! A service outside Conveyor's repository: in a team's own Cargo workspace, depending on
//! Conveyor's crates by path. The workspace's Cargo.toml is made when missing (Conveyor's
//! crates by a relative path, the third-party versions and lints Conveyor is tested with,
//! and its Cargo.lock, so the same versions resolve); an existing one is only checked, never
//! edited, and what it lacks is named.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, ensure};

use super::files::{self, Change};

/// Where a new service goes.
pub(crate) enum Home {
    /// Conveyor's own repository: the service joins the system's roster.
    Conveyor,
    /// A team's own workspace, beside Conveyor's checkout at `conveyor`.
    Own { conveyor: PathBuf },
}

/// What marks Conveyor's repository.
const ROSTER: &str = "crates/system/src/roster.rs";

/// Conveyor's crates a service depends on, by their path in Conveyor's checkout.
const CONVEYOR_CRATES: [(&str, &str); 4] = [
    ("conveyor", "crates/conveyor"),
    ("conveyor-testkit", "crates/testkit"),
    ("platform", "crates/platform"),
    ("events-schema", "events-schema"),
];

/// The third-party crates a new service uses directly, as Conveyor's workspace pins them.
const THIRD_PARTY: [&str; 7] = [
    "anyhow",
    "tokio",
    "sqlx",
    "serde",
    "serde_json",
    "uuid",
    "mimalloc",
];

impl Home {
    /// Conveyor's repository when `root` is one; else `root` is a team's workspace and
    /// `conveyor` must be Conveyor's checkout.
    pub(crate) fn of(root: &Path, conveyor: &Path) -> anyhow::Result<Self> {
        if root.join(ROSTER).is_file() {
            return Ok(Self::Conveyor);
        }
        ensure!(
            conveyor.join(ROSTER).is_file(),
            "{} is not Conveyor's repository, and --conveyor {} is not Conveyor's checkout either: name the checkout whose crates the service depends on with --conveyor DIR",
            root.display(),
            conveyor.display()
        );
        Ok(Self::Own {
            conveyor: conveyor.to_owned(),
        })
    }

    /// Where Conveyor's contract and services are read: the repository itself, or the
    /// checkout a team's workspace depends on.
    pub(crate) fn conveyor_root<'a>(&'a self, root: &'a Path) -> &'a Path {
        match self {
            Self::Conveyor => root,
            Self::Own { conveyor } => conveyor,
        }
    }
}

/// The workspace's Cargo.toml and Cargo.lock when `root` has none; nothing when its
/// Cargo.toml already holds what the service needs.
///
/// # Errors
/// When an existing Cargo.toml lacks the member or a dependency: the lines to add are named.
pub(crate) fn workspace_files(
    root: &Path,
    conveyor: &Path,
    service: &str,
) -> anyhow::Result<Vec<Change>> {
    let manifest = root.join("Cargo.toml");
    if manifest.is_file() {
        check_existing(&files::read(&manifest)?, service)?;
        return Ok(Vec::new());
    }
    let conveyor_manifest = files::read(&conveyor.join("Cargo.toml"))?;
    let to_conveyor = relative(&absolute(root)?, &absolute(conveyor)?);
    let mut changes = vec![Change::new_file(
        "Cargo.toml".to_owned(),
        manifest_text(&conveyor_manifest, &to_conveyor)?,
        "the workspace: Conveyor's crates by path, the versions and lints it is tested with"
            .to_owned(),
    )];
    let lock = conveyor.join("Cargo.lock");
    if lock.is_file() && !root.join("Cargo.lock").exists() {
        changes.push(Change::new_file(
            "Cargo.lock".to_owned(),
            files::read(&lock)?,
            "Conveyor's lock file, so the versions it is tested with resolve".to_owned(),
        ));
    }
    Ok(changes)
}

fn manifest_text(conveyor_manifest: &str, to_conveyor: &Path) -> anyhow::Result<String> {
    let package = section(conveyor_manifest, "[workspace.package]")
        .context("Conveyor's Cargo.toml has no [workspace.package]")?;
    let pinned = section(conveyor_manifest, "[workspace.dependencies]")
        .context("Conveyor's Cargo.toml has no [workspace.dependencies]")?;
    let mut dependencies = Vec::new();
    for (name, path) in CONVEYOR_CRATES {
        let path = to_conveyor.join(path);
        dependencies.push(format!("{name} = {{ path = \"{}\" }}", path.display()));
    }
    for name in THIRD_PARTY {
        let line = pin_of(&pinned, name)
            .with_context(|| format!("Conveyor's [workspace.dependencies] has no {name}"))?;
        dependencies.push(line.to_owned());
    }
    let lints: Vec<String> = sections_starting(conveyor_manifest, "[workspace.lints");
    Ok(format!(
        "# Services built on Conveyor. Made by `conveyor new service`; Conveyor's crates are\n\
         # taken by path, the others at the versions Conveyor is tested with.\n\
         [workspace]\nresolver = \"3\"\nmembers = [\"services/*\"]\n\n{}\n\n\
         [workspace.dependencies]\n{}\n\n{}\n",
        package.trim_end(),
        dependencies.join("\n"),
        lints.join("\n\n")
    ))
}

/// An existing workspace must take `services/NAME` as a member and pin what it uses.
fn check_existing(manifest: &str, service: &str) -> anyhow::Result<()> {
    let members = manifest.contains("\"services/*\"")
        || manifest.contains(&format!("\"services/{service}\""));
    let pinned = section(manifest, "[workspace.dependencies]").unwrap_or_default();
    let missing: Vec<&str> = CONVEYOR_CRATES
        .iter()
        .map(|(name, _)| *name)
        .chain(THIRD_PARTY)
        .filter(|name| pin_of(&pinned, name).is_none())
        .collect();
    ensure!(
        members && missing.is_empty(),
        "the workspace's Cargo.toml {}{}{}: add that first (nothing was written)",
        if members {
            String::new()
        } else {
            format!(
                "does not take services/{service} as a member (add \"services/*\" to [workspace] members)"
            )
        },
        if !members && !missing.is_empty() {
            "; and it "
        } else {
            ""
        },
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                "lacks in [workspace.dependencies]: {} (as Conveyor's Cargo.toml pins them, and Conveyor's crates by path)",
                missing.join(", ")
            )
        }
    );
    Ok(())
}

/// The line of `[workspace.dependencies]` text `pinned` that pins `name`.
fn pin_of<'a>(pinned: &'a str, name: &str) -> Option<&'a str> {
    pinned
        .lines()
        .find(|line| line.split_once(" = ").is_some_and(|(key, _)| key == name))
}

/// The lines of the section headed `header`, up to the next header.
fn section(manifest: &str, header: &str) -> Option<String> {
    let start = manifest.lines().position(|line| line.trim() == header)?;
    let lines: Vec<&str> = manifest
        .lines()
        .skip(start)
        .enumerate()
        .take_while(|(index, line)| *index == 0 || !line.starts_with('['))
        .map(|(_, line)| line)
        .collect();
    Some(lines.join("\n"))
}

/// Every section whose header starts with `prefix`, each whole.
fn sections_starting(manifest: &str, prefix: &str) -> Vec<String> {
    manifest
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|header| section(manifest, header.trim()))
        .map(|text| text.trim_end().to_owned())
        .collect()
}

/// `path` made absolute against the current directory, `.` and `..` resolved by name (it
/// need not exist yet).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let joined = std::env::current_dir()
        .context("cannot read the current directory")?
        .join(path);
    let mut clean = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    Ok(clean)
}

/// The path from directory `from` to `to`, both absolute: `../conveyor`.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in shared..from.len() {
        path.push("..");
    }
    for component in &to[shared..] {
        path.push(component);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONVEYOR: &str = "[workspace]\nmembers = [\"crates/conveyor\"]\n\n[workspace.package]\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace.dependencies]\nconveyor = { path = \"crates/conveyor\" }\nanyhow = \"1\"\ntokio = { version = \"1.54\", features = [\"rt\"] }\nsqlx = \"0.9\"\nserde = \"1\"\nserde_json = \"1\"\nuuid = \"1.29\"\nmimalloc = \"0.1\"\nreqwest = \"0.12\"\n\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\n\n[workspace.lints.clippy]\npedantic = \"warn\"\n";

    #[test]
    fn paths_between_siblings_climb_to_their_common_folder() {
        let relative = relative(Path::new("/srv/shop"), Path::new("/srv/conveyor"));
        assert_eq!(relative, Path::new("../conveyor"));
        let deeper = super::relative(Path::new("/a/b/c"), Path::new("/a/d"));
        assert_eq!(deeper, Path::new("../../d"));
    }

    #[test]
    fn a_new_workspace_takes_conveyors_crates_by_path_and_its_pins_and_lints() {
        let text = manifest_text(CONVEYOR, Path::new("../conveyor")).unwrap();
        assert!(text.contains("members = [\"services/*\"]"), "{text}");
        assert!(text.contains("edition = \"2024\""), "{text}");
        let path = "platform = { path = \"../conveyor/crates/platform\" }";
        assert!(text.contains(path), "{text}");
        let pinned = "tokio = { version = \"1.54\", features = [\"rt\"] }";
        assert!(text.contains(pinned), "{text}");
        assert!(
            !text.contains("reqwest"),
            "only what a service uses: {text}"
        );
        assert!(
            text.contains("[workspace.lints.clippy]\npedantic = \"warn\""),
            "{text}"
        );
        check_existing(&text, "notifications").unwrap();
    }

    #[test]
    fn an_existing_workspace_is_told_what_it_lacks() {
        let error = check_existing("[workspace]\nmembers = [\"apps/*\"]\n", "notifications")
            .unwrap_err()
            .to_string();
        assert!(error.contains("add \"services/*\""), "{error}");
        assert!(
            error.contains("conveyor, conveyor-testkit, platform"),
            "{error}"
        );
    }
}
