//! One file per top-level command.

pub(crate) mod bench;
pub(crate) mod bench_console;
pub(crate) mod bench_gateway;
pub(crate) mod bench_schedule;
pub(crate) mod broker_users;
pub(crate) mod cache;
pub(crate) mod conformance;
pub(crate) mod console;
pub(crate) mod demo;
pub(crate) mod deploy;
pub(crate) mod dlq;
pub(crate) mod events;
pub(crate) mod flow;
pub(crate) mod ledger_demo;
pub(crate) mod machine_cpu;
pub(crate) mod new;
pub(crate) mod outbox;
pub(crate) mod reference;
pub(crate) mod saga;
pub(crate) mod scheduled;
pub(crate) mod schema;
pub(crate) mod serve;
pub(crate) mod topology;

use std::time::Duration;

use anyhow::Context;
use system::ServiceName;

/// Each service's base URL: `<SERVICE>_URL`, else its default port on this machine.
/// The roster's services as clap's possible values, so `--help` lists them and a name
/// that is none of them is refused with the list.
pub(crate) fn service_choice() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(ServiceName::all().map(ServiceName::as_str))
}

/// The service `--service` names, or every service of the roster when it names none.
pub(crate) fn named_or_all(service: Option<&str>) -> anyhow::Result<Vec<ServiceName>> {
    Ok(match service {
        Some(service) => vec![ServiceName::parse(service)?],
        None => ServiceName::all().collect(),
    })
}

/// The services that keep cached copies of others' data, as [`service_choice`] gives them.
pub(crate) fn copy_keeper_choice() -> clap::builder::PossibleValuesParser {
    let keepers = ServiceName::all()
        .filter(|service| !service.declaration().cache_sources.is_empty())
        .map(ServiceName::as_str);
    clap::builder::PossibleValuesParser::new(keepers)
}

pub(crate) fn service_urls() -> std::collections::BTreeMap<system::ServiceName, String> {
    system::ServiceName::all()
        .map(|service| {
            let variable = format!("{}_URL", service.as_str().to_ascii_uppercase());
            let url = std::env::var(&variable)
                .unwrap_or_else(|_| format!("http://127.0.0.1:{}", service.default_port()));
            (service, url.trim_end_matches('/').to_owned())
        })
        .collect()
}

/// A small pool on `service`'s database at `<SERVICE>_DATABASE_URL`.
pub(crate) async fn service_database(
    config: &system::SystemConfig,
    service: ServiceName,
) -> anyhow::Result<sqlx::PgPool> {
    let url = config
        .database_urls
        .get(&service)
        .cloned()
        .unwrap_or_default();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&url)
        .await
        .with_context(|| {
            format!(
                "cannot read the {service} database at {}: is Postgres running, and does {}_DATABASE_URL name it?",
                conveyor::redact_url(&url),
                service.as_str().to_ascii_uppercase()
            )
        })
}

/// `report` as one JSON object with `--json`, else as the command's table.
pub(crate) fn show<T: serde::Serialize>(
    json: bool,
    report: &T,
    table: fn(&T),
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        table(report);
    }
    Ok(())
}
