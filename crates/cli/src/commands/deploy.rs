//! `conveyor deploy`: the deployment files' lists of services (the Dockerfile's binaries,
//! docker-compose.yml's service blocks, broker passwords and gateway upstreams, Prometheus's
//! targets), written from the services' declarations, and Prometheus's alerting rules
//! (`observability/alerts.yml`), written whole from the alerts' list.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::generated;

/// Prometheus's alerting rules, under the repository's root.
const ALERTS: &str = "observability/alerts.yml";

#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// Write nothing; fail if a file differs from what the declarations make (CI runs this).
    #[arg(long)]
    check: bool,
    /// The repository's root, where Dockerfile and docker-compose.yml are.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

pub(crate) fn run(args: DeployArgs) -> anyhow::Result<()> {
    for file in system::deploy::FILES {
        let path = args.root.join(file);
        let current = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: run in the repository's root, or name it with --root",
                path.display()
            )
        })?;
        let text = system::deploy::regenerate(file, &current)?;
        generated::write_or_check(&path, &text, args.check, "conveyor deploy")?;
    }
    let alerts = system::alerts::rules_yaml(&conveyor::Names::default());
    generated::write_or_check(
        &args.root.join(ALERTS),
        &alerts,
        args.check,
        "conveyor deploy",
    )?;
    Ok(())
}
