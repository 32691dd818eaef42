//! What the generators' tests share: running `conveyor new …` as a newcomer does.

use std::path::Path;
use std::process::Command;

/// `conveyor new WHAT ARGS --root ROOT`: whether it succeeded, and what it said.
pub(crate) fn conveyor_new(what: &str, args: &[&str], root: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["new", what])
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.success(), format!("{stdout}{stderr}"))
}
