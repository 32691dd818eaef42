//! `conveyor topology apply|export`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use conveyor::{AmqpConfig, BrokerUser, Names};

use crate::commands::broker_users;
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
    /// Print or make the broker users of least privilege: one per service and the gateway,
    /// each may configure and read only its own queues and publish to conveyor.events only
    /// the event types it owns (topic permissions), and the operators' user
    /// (conveyor-operator), for `topology apply` and `dlq`. Connected as their own users,
    /// consumers take each event only from the user of the service that owns its type.
    ///
    /// Without --apply: a shell script of rabbitmqctl commands, to run on a broker node.
    /// Passwords come from <OWNER>_BROKER_PASSWORD (ORDERS_BROKER_PASSWORD,
    /// GATEWAY_BROKER_PASSWORD, OPERATOR_BROKER_PASSWORD, …) when the script or --apply runs;
    /// none is printed. Then give each service AMQP_URL (or <SERVICE>_AMQP_URL) with its user.
    Users {
        /// The vhost the permissions apply to.
        #[arg(long, default_value = "/")]
        vhost: String,
        /// Make them now through the management API at RABBITMQ_MANAGEMENT_URL
        /// [default: http://127.0.0.1:15672], as AMQP_URL's user (an administrator).
        #[arg(long, conflicts_with = "definitions")]
        apply: bool,
        /// Write them as RabbitMQ definitions to this file instead (salted password hashes,
        /// no passwords), with the broker's administrator (conveyor-admin, password from
        /// ADMIN_BROKER_PASSWORD): for a broker that loads definitions at boot, which then
        /// makes no default user (docker-compose.yml loads it beside definitions.json).
        #[arg(long, value_name = "FILE")]
        definitions: Option<PathBuf>,
        /// Name the users, and the exchanges and queues their permissions name, under this
        /// prefix: for a second system on one broker (broker users are per broker, not per
        /// vhost), or a test beside others. Its services must use the same names.
        #[arg(long, default_value = "")]
        prefix: String,
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
        TopologyCommand::Users {
            vhost,
            apply,
            definitions,
            prefix,
        } => {
            let names = if prefix.is_empty() {
                Names::default()
            } else {
                Names::with_prefix(prefix)
            };
            let mut users = system::broker_users(&names)?;
            if let Some(path) = definitions {
                users.push(BrokerUser::administrator(&names));
                write_user_definitions(&users, &vhost, &path)
            } else if apply {
                broker_users::apply(&users, &vhost).await
            } else {
                print!("{}", broker_users::script(&users, &vhost));
                Ok(())
            }
        }
    }
}

/// Writes the users' definitions with the mode the umask gives: the broker's own account
/// (a container's `rabbitmq` user) must read them, and they hold salted hashes, not
/// passwords.
fn write_user_definitions(users: &[BrokerUser], vhost: &str, path: &Path) -> anyhow::Result<()> {
    let definitions = broker_users::definitions(users, vhost)?;
    let text = serde_json::to_string_pretty(&definitions)? + "\n";
    std::fs::write(path, text)
        .with_context(|| format!("writing the users' definitions to {}", path.display()))?;
    println!(
        "Wrote {} broker users with their permissions on vhost {vhost} to {}.",
        users.len(),
        path.display()
    );
    Ok(())
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
