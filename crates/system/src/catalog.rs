//! What each service sends and receives, taken from the services' own declarations: the
//! handlers their consumers register, and the events they say they emit.

use std::collections::BTreeSet;

use conveyor::{Names, Topology};
use events_schema::asyncapi::ServiceEvents;
use platform::ServiceConfig;

/// Every service, in start order.
pub const SERVICES: [&str; 5] = ["users", "inventory", "orders", "payments", "shipping"];

fn config_for(service: &str, names: &Names) -> ServiceConfig {
    ServiceConfig {
        service: service.to_owned(),
        database_url: String::new(),
        port: 0,
        listen_addr: [127, 0, 0, 1].into(),
        amqp: conveyor::AmqpConfig::new(conveyor::DEFAULT_AMQP_URL, service),
        names: names.clone(),
    }
}

/// The consumers of the services that consume (users only produces).
///
/// # Errors
/// When the event contract does not compile.
pub(crate) fn consumers(names: &Names) -> anyhow::Result<Vec<conveyor::Consumer>> {
    Ok(vec![
        inventory_service::consumer(&config_for("inventory", names))?,
        orders_service::consumer(&config_for("orders", names))?,
        payments_service::consumer(&config_for("payments", names))?,
        shipping_service::consumer(
            &config_for("shipping", names),
            &shipping_service::Settings::default(),
        )?,
    ])
}

/// Exchanges, queues and bindings of the whole system, as the services declare them.
///
/// # Errors
/// As [`consumers`].
pub fn all_topology(names: &Names) -> anyhow::Result<Topology> {
    let mut topology = Topology::shared(names);
    for consumer in consumers(names)? {
        topology.add_service(names, &consumer.service_topology());
    }
    Ok(topology)
}

/// Who sends and receives each event, for the AsyncAPI document.
///
/// # Errors
/// As [`consumers`].
pub fn service_events() -> anyhow::Result<Vec<ServiceEvents>> {
    let names = Names::default();
    let receives: Vec<(String, BTreeSet<String>)> = consumers(&names)?
        .iter()
        .map(|consumer| {
            let topology = consumer.service_topology();
            (topology.service, topology.event_types)
        })
        .collect();
    let emits: [(&str, &[&str]); 5] = [
        ("users", users_service::EMITS),
        ("inventory", inventory_service::EMITS),
        ("orders", orders_service::EMITS),
        ("payments", payments_service::EMITS),
        ("shipping", shipping_service::EMITS),
    ];
    Ok(emits
        .into_iter()
        .map(|(service, sends)| ServiceEvents {
            service: service.to_owned(),
            sends: sends.iter().map(|event| (*event).to_owned()).collect(),
            receives: receives
                .iter()
                .find(|(name, _)| name == service)
                .map(|(_, types)| types.clone())
                .unwrap_or_default(),
        })
        .collect())
}
