//! `conveyor topology apply|export`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use conveyor::{AmqpConfig, Names};

use crate::generated;

#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Declare every exchange, queue and binding on the broker at AMQP_URL. Safe to repeat.
    Apply,
    /// Write the topology as RabbitMQ definitions (for `rabbitmqctl import_definitions`).
    Export {
        /// Where to write; `-` for stdout.
        #[arg(long, default_value = "broker-config/definitions.json")]
        output: PathBuf,
        /// The vhost the definitions name.
        #[arg(long, default_value = "/")]
        vhost: String,
        /// Write nothing; fail if the file differs from what the code declares.
        #[arg(long)]
        check: bool,
    },
}

pub(crate) async fn run(command: TopologyCommand) -> anyhow::Result<()> {
    match command {
        TopologyCommand::Apply => apply().await,
        TopologyCommand::Export {
            output,
            vhost,
            check,
        } => export(&output, &vhost, check),
    }
}

async fn apply() -> anyhow::Result<()> {
    let amqp = AmqpConfig::from_env("conveyor topology");
    let topology = system::all_topology(&Names::default())?;
    let connection = amqp.connect().await?;
    topology.declare(&connection).await?;
    connection.close(200, "topology applied".into()).await?;
    println!(
        "Declared {} exchanges and {} queues on {}.",
        topology.exchange_names().count(),
        topology.queue_names().count(),
        amqp.redacted_url()
    );
    Ok(())
}

fn definitions_text(vhost: &str) -> anyhow::Result<String> {
    let definitions = system::all_topology(&Names::default())?.to_definitions(vhost);
    let mut text = serde_json::to_string_pretty(&definitions)?;
    text.push('\n');
    Ok(text)
}

fn export(output: &Path, vhost: &str, check: bool) -> anyhow::Result<()> {
    generated::write_or_check(
        output,
        &definitions_text(vhost)?,
        check,
        "conveyor topology export",
    )
}
