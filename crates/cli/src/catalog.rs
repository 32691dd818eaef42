//! What each service sends and the event types it subscribes to, as DESIGN.md's saga and
//! cached copies need.
//!
//! Until the services exist as crates, this is where they declare it; once they do, each
//! service's registered handlers and emitted events take this list's place.

use std::collections::BTreeSet;

use conveyor::{ConsumerOptions, Names, ServiceTopology, Topology};

const USER_EVENTS: [&str; 3] = ["user.registered", "user.updated", "user.deactivated"];

fn subscriptions() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "orders",
            [
                &USER_EVENTS[..],
                &[
                    "product.created",
                    "product.updated",
                    "inventory.rejected",
                    "payment.declined",
                    "shipment.scheduled",
                    "shipment.failed",
                ],
            ]
            .concat(),
        ),
        ("inventory", vec!["order.created", "order.cancelled"]),
        (
            "payments",
            [&USER_EVENTS[..], &["inventory.reserved", "order.cancelled"]].concat(),
        ),
        (
            "shipping",
            [&USER_EVENTS[..], &["payment.captured", "order.cancelled"]].concat(),
        ),
    ]
}

/// The events each service emits.
fn emissions() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("users", USER_EVENTS.to_vec()),
        (
            "inventory",
            vec![
                "product.created",
                "product.updated",
                "inventory.reserved",
                "inventory.rejected",
                "inventory.released",
            ],
        ),
        (
            "orders",
            vec!["order.created", "order.confirmed", "order.cancelled"],
        ),
        (
            "payments",
            vec!["payment.captured", "payment.declined", "payment.refunded"],
        ),
        (
            "shipping",
            vec![
                "shipment.scheduled",
                "shipment.failed",
                "shipment.cancelled",
            ],
        ),
    ]
}

/// Who sends and who receives each event, for the AsyncAPI document.
pub(crate) fn service_events() -> Vec<events_schema::asyncapi::ServiceEvents> {
    let subscriptions = subscriptions();
    emissions()
        .into_iter()
        .map(|(service, sends)| {
            let receives = subscriptions
                .iter()
                .find(|(name, _)| *name == service)
                .map(|(_, types)| types.iter().map(|t| (*t).to_owned()).collect())
                .unwrap_or_default();
            events_schema::asyncapi::ServiceEvents {
                service: service.to_owned(),
                sends: sends.into_iter().map(str::to_owned).collect(),
                receives,
            }
        })
        .collect()
}

/// Every service's consuming side, with the default retry tiers.
pub(crate) fn services() -> Vec<ServiceTopology> {
    let retry_tiers = ConsumerOptions::default().retry_tiers;
    subscriptions()
        .into_iter()
        .map(|(service, event_types)| ServiceTopology {
            service: service.to_owned(),
            event_types: event_types
                .into_iter()
                .map(str::to_owned)
                .collect::<BTreeSet<_>>(),
            retry_tiers: retry_tiers.clone(),
        })
        .collect()
}

/// The whole system's topology.
pub(crate) fn topology(names: &Names) -> Topology {
    let mut topology = Topology::shared(names);
    for service in services() {
        topology.add_service(names, &service);
    }
    topology
}
