//! Files the code generates and the repository keeps (broker definitions, the AsyncAPI
//! document): written on request, or checked for drift.

use std::path::Path;

use anyhow::Context;

/// Writes `text` to `output` (`-` for stdout), or with `check` fails if the file differs,
/// telling the user to run `regenerate`.
pub(crate) fn write_or_check(
    output: &Path,
    text: &str,
    check: bool,
    regenerate: &str,
) -> anyhow::Result<()> {
    if check {
        let current = std::fs::read_to_string(output)
            .with_context(|| format!("cannot read {}", output.display()))?;
        anyhow::ensure!(
            current == text,
            "{} differs from what the code declares: run `{regenerate}` and commit the result",
            output.display()
        );
        println!("{} matches the code.", output.display());
        return Ok(());
    }
    if output.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?;
    println!("Wrote {}.", output.display());
    Ok(())
}
