//! The event types each service subscribes to, as DESIGN.md's saga and cached copies need.
//!
//! Until the services exist as crates, this is where their subscriptions are declared; once
//! they do, each service's registered handlers take this list's place.

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
