//! What each service sends and receives, taken from the services' own declarations: the
//! handlers their consumers register, and the events they say they emit.

use std::collections::BTreeSet;

use conveyor::{BrokerUser, Names, Topology};
use events_schema::asyncapi::ServiceEvents;

use crate::roster::ServiceName;

/// The consumers of the services that consume (users only produces).
///
/// # Errors
/// When the event contract does not compile.
pub(crate) fn consumers(names: &Names) -> anyhow::Result<Vec<conveyor::Consumer>> {
    let mut consumers = Vec::new();
    for service in ServiceName::all() {
        consumers.extend(service.consumer(names)?);
    }
    Ok(consumers)
}

/// Exchanges, queues and bindings of the whole system, as the services declare them.
///
/// # Errors
/// As [`consumers`].
pub fn all_topology(names: &Names) -> anyhow::Result<Topology> {
    let mut topology = Topology::shared(names);
    let mut subscribed = BTreeSet::new();
    for consumer in consumers(names)? {
        let service = consumer.service_topology();
        subscribed.extend(service.event_types.iter().cloned());
        topology.add_service(names, &service);
    }
    let unsubscribed: BTreeSet<String> = events_schema::SCHEMAS
        .iter()
        .map(|schema| schema.event_type.to_owned())
        .filter(|event_type| !subscribed.contains(event_type))
        .collect();
    topology.discard_unsubscribed(names, unsubscribed);
    Ok(topology)
}

/// Who sends and receives each event, for the AsyncAPI document.
///
/// Of the default names, never `CONVEYOR_NAME_PREFIX`'s: the document is checked in and
/// describes every deployment, and what is read here (services and event types) is the same
/// under any prefix.
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
    Ok(ServiceName::all()
        .map(|service| ServiceEvents {
            service: service.as_str().to_owned(),
            sends: service
                .emits()
                .iter()
                .map(|event| (*event).to_owned())
                .collect(),
            receives: receives
                .iter()
                .find(|(name, _)| name == service.as_str())
                .map(|(_, types)| types.clone())
                .unwrap_or_default(),
        })
        .collect())
}

/// The owners of the broker users the system makes beside its services' (the gateway's, the
/// operators' and the broker administrator's): no service or outside consumer may take one.
pub const SYSTEM_BROKER_OWNERS: [&str; 3] =
    [events_schema::publishers::GATEWAY, "operator", "admin"];

/// Every broker user of the system with least privilege: one per service and the gateway
/// (each publishing only the event types `events_schema::publishers` gives it), and the
/// operators' user.
///
/// # Errors
/// As [`consumers`].
pub fn broker_users(names: &Names) -> anyhow::Result<Vec<BrokerUser>> {
    let consumers = consumers(names)?;
    let mut users: Vec<BrokerUser> = ServiceName::all()
        .map(|service| {
            let consumes = consumers
                .iter()
                .map(conveyor::Consumer::service_topology)
                .find(|topology| topology.service == service.as_str());
            BrokerUser::for_service(
                names,
                service.as_str(),
                consumes.as_ref(),
                &events_schema::publishers::published_by(service.as_str()),
            )
        })
        .collect();
    let gateway = events_schema::publishers::GATEWAY;
    users.push(BrokerUser::for_service(
        names,
        gateway,
        None,
        &events_schema::publishers::published_by(gateway),
    ));
    users.push(BrokerUser::operator(names));
    Ok(users)
}

/// Every service's OpenAPI document, by name (the gateway's public document is made from
/// these: `api_gateway::public_document`).
///
/// # Errors
/// As [`ServiceName::openapi`].
pub fn openapi_documents() -> anyhow::Result<Vec<(&'static str, serde_json::Value)>> {
    ServiceName::all()
        .map(|service| Ok((service.as_str(), service.openapi()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_emits_exactly_what_the_contract_says_it_owns() {
        for service in ServiceName::all() {
            let declared: BTreeSet<&str> = service.emits().iter().copied().collect();
            assert_eq!(
                declared.len(),
                service.emits().len(),
                "{service}: `emits` of DECLARATION in services/{service}/src/lib.rs lists a type twice"
            );
            let owned: BTreeSet<&str> = events_schema::publishers::published_by(service.as_str())
                .into_iter()
                .collect();
            let unlisted: Vec<&str> = owned.difference(&declared).copied().collect();
            let unowned: Vec<&str> = declared.difference(&owned).copied().collect();
            assert!(
                unlisted.is_empty(),
                "{service} owns {unlisted:?} (OWNERS in events-schema/src/publishers.rs), which its `emits` of DECLARATION in services/{service}/src/lib.rs does not list: add them there"
            );
            assert!(
                unowned.is_empty(),
                "{service}'s `emits` of DECLARATION in services/{service}/src/lib.rs lists {unowned:?}, which OWNERS in events-schema/src/publishers.rs does not give it: add `(\"TYPE\", \"{service}\"),` there, or remove them from `emits`"
            );
        }
    }
}
