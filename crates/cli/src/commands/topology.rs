//! `conveyor topology apply|export|users`, on the names `CONVEYOR_NAME_PREFIX` sets (read
//! once here and passed on).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use conveyor::{AmqpConfig, BrokerUser, ConsumerOptions, Names, ServiceTopology, Topology};
use system::ServiceName;

use crate::commands::broker_users;
use crate::generated;

/// The definitions the repository keeps (docker-compose.yml loads them, a test checks them):
/// always of the default names.
const CHECKED_IN_DEFINITIONS: &str = "broker-config/definitions.json";

#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Declare every exchange, queue and binding on the broker at AMQP_URL, named under
    /// CONVEYOR_NAME_PREFIX if it is set. Safe to repeat.
    Apply,
    /// Write the topology as RabbitMQ definitions (for `rabbitmqctl import_definitions`),
    /// named under CONVEYOR_NAME_PREFIX if it is set.
    Export {
        /// Where to write; `-` for stdout. The default file, the repository's, holds the
        /// default names: with CONVEYOR_NAME_PREFIX set, name another.
        #[arg(long, default_value = CHECKED_IN_DEFINITIONS)]
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
    /// consumers take each event only from the user of the service that owns its type. Under
    /// a prefix (--prefix, or CONVEYOR_NAME_PREFIX) every name has it: blue.conveyor-orders,
    /// blue.conveyor.events.
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
        /// vhost), or a test beside others. Its services must use the same names: run them,
        /// the gateway and the other conveyor commands with CONVEYOR_NAME_PREFIX set to it.
        /// Empty: the default names. 1 to 64 ASCII letters, digits, '-' or '_', starting with
        /// a letter or digit, not amq. Refused if CONVEYOR_NAME_PREFIX is set to another
        /// [default: CONVEYOR_NAME_PREFIX's prefix; none if it is unset or empty].
        #[arg(long, value_parser = parse_prefix)]
        prefix: Option<String>,
        /// Instead of the system's users: the user of a consumer outside its services, one
        /// written in another language to the protocol in the book's "Consume from another
        /// language" (conveyor-NAME, password from NAME_BROKER_PASSWORD). It may declare and
        /// read only NAME.events, its retry queues (the default tiers, 1s, 10s and 60s) and
        /// NAME.dlq, bind NAME.events to --events' types on conveyor.events, and publish
        /// only its retry copies and dead letters, never an event. With --apply its queues
        /// and bindings are declared too (as AMQP_URL's user); with --definitions the file
        /// holds them beside the user, for a broker that imports it beside the system's.
        /// NAME: lowercase letters, digits and '-', starting with a letter, not a service's.
        #[arg(long, value_name = "NAME", requires = "events", value_parser = parse_consumer_name)]
        consumer: Option<String>,
        /// With --consumer: the event types it consumes, comma-separated
        /// (order.confirmed,payment.captured), each a type of the contract.
        #[arg(long, value_name = "TYPES", value_delimiter = ',', requires = "consumer", value_parser = parse_event_type)]
        events: Vec<String>,
    },
}

pub(crate) async fn run(command: TopologyCommand) -> anyhow::Result<()> {
    let names = Names::from_env()?;
    match command {
        TopologyCommand::Apply => apply(&names).await,
        TopologyCommand::Export {
            output,
            vhost,
            check,
        } => export(&names, &output, &vhost, check),
        TopologyCommand::Users {
            vhost,
            apply,
            definitions,
            prefix,
            consumer,
            events,
        } => {
            let names = users_names(names, prefix.as_deref())?;
            if let Some(consumer) = consumer {
                let consumes = outside_consumer(consumer, events);
                return outside_consumer_user(&names, &consumes, &vhost, apply, definitions).await;
            }
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

/// An outside consumer's queues: bound to `events`, with the runtime's default tiers, which
/// its protocol asks every consumer of one queue to share.
fn outside_consumer(name: String, events: Vec<String>) -> ServiceTopology {
    ServiceTopology {
        service: name,
        event_types: events.into_iter().collect(),
        retry_tiers: ConsumerOptions::default().retry_tiers,
    }
}

/// `users --consumer`: its user as a script, made now (with its queues), or as definitions
/// (with its queues).
async fn outside_consumer_user(
    names: &Names,
    consumes: &ServiceTopology,
    vhost: &str,
    apply: bool,
    definitions: Option<PathBuf>,
) -> anyhow::Result<()> {
    let users = [BrokerUser::for_outside_consumer(names, consumes)];
    let topology = Topology::for_service(names, consumes);
    if let Some(path) = definitions {
        let mut merged = topology.to_definitions(vhost);
        let accounts = broker_users::definitions(&users, vhost)?;
        if let (Some(merged), Some(accounts)) = (merged.as_object_mut(), accounts.as_object()) {
            merged.extend(accounts.clone());
        }
        let what = format!(
            "broker user {} with its permissions, queues and bindings",
            users[0].name
        );
        write_definitions(&merged, &what, vhost, &path)
    } else if apply {
        broker_users::apply(&users, vhost).await?;
        declare(&topology).await
    } else {
        print!("{}", broker_users::script(&users, vhost));
        Ok(())
    }
}

/// Writes the users' definitions with the mode the umask gives: the broker's own account
/// (a container's `rabbitmq` user) must read them, and they hold salted hashes, not
/// passwords.
fn write_user_definitions(users: &[BrokerUser], vhost: &str, path: &Path) -> anyhow::Result<()> {
    let definitions = broker_users::definitions(users, vhost)?;
    let what = format!("{} broker users with their permissions", users.len());
    write_definitions(&definitions, &what, vhost, path)
}

fn write_definitions(
    definitions: &serde_json::Value,
    what: &str,
    vhost: &str,
    path: &Path,
) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(definitions)? + "\n";
    std::fs::write(path, text)
        .with_context(|| format!("writing the users' definitions to {}", path.display()))?;
    println!("Wrote {what} on vhost {vhost} to {}.", path.display());
    Ok(())
}

/// `--prefix` wins over `CONVEYOR_NAME_PREFIX` (the names `from_env` gave) only where the
/// variable is unset or empty: two different prefixes are two systems, and which was meant
/// is not guessed.
fn users_names(from_env: Names, prefix: Option<&str>) -> anyhow::Result<Names> {
    let Some(prefix) = prefix else {
        return Ok(from_env);
    };
    anyhow::ensure!(
        from_env.prefix().is_empty() || from_env.prefix() == prefix,
        "--prefix {prefix:?} and {}={:?} name different systems: give one of them, or the same prefix in both",
        Names::PREFIX_VARIABLE,
        from_env.prefix()
    );
    Ok(Names::with_prefix(prefix))
}

/// `--consumer`: a name for its queues and broker user that no service of the system has.
fn parse_consumer_name(name: &str) -> Result<String, String> {
    let well_formed = name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(format!(
            "{name:?} is not a consumer name: 1 to 64 lowercase letters, digits and '-', starting with a letter and not ending with '-' (ledger-py); it names queues and a broker user"
        ));
    }
    let taken = ServiceName::all().any(|service| service.as_str() == name)
        || system::SYSTEM_BROKER_OWNERS.contains(&name)
        || name == "conveyor";
    if taken {
        return Err(format!(
            "{name:?} is a service or user of the system itself: choose another name"
        ));
    }
    Ok(name.to_owned())
}

/// `--events`: a type the contract has a schema for.
fn parse_event_type(event_type: &str) -> Result<String, String> {
    if events_schema::SCHEMAS
        .iter()
        .any(|file| file.event_type == event_type)
    {
        Ok(event_type.to_owned())
    } else {
        Err(format!(
            "{event_type:?} is not an event type of the contract: each has a folder of its own under events-schema/schemas/ (order.confirmed)"
        ))
    }
}

/// `--prefix`: a prefix [`Names::is_valid_prefix`] accepts, or empty for the default names.
fn parse_prefix(text: &str) -> Result<String, String> {
    if Names::is_valid_prefix(text) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not valid: {}", Names::PREFIX_RULE))
    }
}

async fn apply(names: &Names) -> anyhow::Result<()> {
    declare(&system::all_topology(names)?).await
}

async fn declare(topology: &Topology) -> anyhow::Result<()> {
    let amqp = AmqpConfig::from_env("conveyor topology");
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

fn definitions_text(names: &Names, vhost: &str) -> anyhow::Result<String> {
    let definitions = system::all_topology(names)?.to_definitions(vhost);
    let mut text = serde_json::to_string_pretty(&definitions)?;
    text.push('\n');
    Ok(text)
}

fn export(names: &Names, output: &Path, vhost: &str, check: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        names.prefix().is_empty() || output != Path::new(CHECKED_IN_DEFINITIONS),
        "{CHECKED_IN_DEFINITIONS} is the repository's, of the default names (docker-compose.yml loads it), but {}={:?} sets a prefix: give --output for this system's definitions (`-` for stdout)",
        Names::PREFIX_VARIABLE,
        names.prefix()
    );
    generated::write_or_check(
        output,
        &definitions_text(names, vhost)?,
        check,
        "conveyor topology export",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_take_the_prefix_from_the_flag_or_the_variable_and_refuse_two() {
        let blue = Names::with_prefix("blue");
        assert_eq!(
            users_names(Names::default(), None).unwrap(),
            Names::default()
        );
        assert_eq!(users_names(blue.clone(), None).unwrap(), blue);
        assert_eq!(users_names(Names::default(), Some("blue")).unwrap(), blue);
        assert_eq!(users_names(blue.clone(), Some("blue")).unwrap(), blue);
        assert_eq!(
            users_names(Names::default(), Some("")).unwrap(),
            Names::default()
        );
        for (from_env, flag) in [(&blue, "green"), (&blue, "")] {
            let refused = users_names(from_env.clone(), Some(flag))
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains("CONVEYOR_NAME_PREFIX=\"blue\""),
                "{refused}"
            );
            assert!(refused.contains(&format!("--prefix {flag:?}")), "{refused}");
        }
        assert_eq!(parse_prefix("blue"), Ok("blue".to_owned()));
        assert_eq!(parse_prefix(""), Ok(String::new()));
        let refused = parse_prefix("blue green").unwrap_err();
        assert!(refused.ends_with(Names::PREFIX_RULE), "{refused}");
    }

    #[test]
    fn the_checked_in_definitions_keep_the_default_names() {
        let blue = Names::with_prefix("blue");
        let refused = export(&blue, Path::new(CHECKED_IN_DEFINITIONS), "/", true)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("give --output"), "{refused}");
    }
}
