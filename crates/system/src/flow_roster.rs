//! The system's flows, each declared by the crate of the services that run it, and checked
//! against the contract and the roster's consumers, so a declaration cannot drift from the
//! handlers and emits that carry the flow out.

use std::collections::{BTreeMap, BTreeSet};

use conveyor::Names;
use flows::map::FlowMap;
use flows::{Flow, Participants};

use crate::catalog;
use crate::roster::ServiceName;

// ANCHOR: flows
/// Every flow of the system. A new flow is its declaration in its services' crate and a
/// line here.
static FLOWS: &[&Flow] = &[&order_saga::ORDER_FLOW, &orders_service::RETURN_FLOW];
// ANCHOR_END: flows

/// Every flow, in declaration order.
pub fn all_flows() -> &'static [&'static Flow] {
    FLOWS
}

/// The flow named `name`.
///
/// # Errors
/// When no flow has that name; the error lists the flows there are.
pub fn flow_named(name: &str) -> anyhow::Result<&'static Flow> {
    FLOWS
        .iter()
        .copied()
        .find(|flow| flow.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = FLOWS.iter().map(|flow| flow.name).collect();
            anyhow::anyhow!("no flow {name:?}: the flows are {}", known.join(", "))
        })
}

/// How each flow disagrees with the contract or the services' consumers, one sentence each.
///
/// # Errors
/// When a service's consumer cannot be made (its contract does not compile).
pub fn flow_problems(names: &Names) -> anyhow::Result<Vec<String>> {
    let participants = Roster::read(names)?;
    Ok(FLOWS
        .iter()
        .flat_map(|flow| flows::check(flow, &participants))
        .collect())
}

/// Who emits and who handles each event type, from the events each service says it emits
/// and the handlers its consumer registers: what `flow trace` reads a run against.
///
/// # Errors
/// When a service's event contract does not compile.
pub fn flow_map(names: &Names) -> anyhow::Result<FlowMap> {
    let mut map = ServiceName::all().fold(FlowMap::default(), |map, service| {
        map.emits(service.as_str(), service.emits())
    });
    for consumer in catalog::consumers(names)? {
        let topology = consumer.service_topology();
        let service = ServiceName::parse(&topology.service)?;
        map = map.consumes(service.as_str(), topology.event_types, topology.retry_tiers);
    }
    Ok(map)
}

/// What the contract and the roster's consumers say, as a flow's check asks it.
struct Roster {
    handlers: BTreeMap<String, BTreeSet<String>>,
}

impl Roster {
    fn read(names: &Names) -> anyhow::Result<Self> {
        let mut handlers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for consumer in catalog::consumers(names)? {
            let topology = consumer.service_topology();
            handlers
                .entry(topology.service)
                .or_default()
                .extend(topology.event_types);
        }
        Ok(Self { handlers })
    }
}

impl Participants for Roster {
    fn is_known(&self, event_type: &str) -> bool {
        events_schema::schema_for(event_type, 1).is_some()
    }

    fn owner_of(&self, event_type: &str) -> Option<&str> {
        events_schema::publishers::owner_of(event_type)
    }

    fn handles(&self, service: &str, event_type: &str) -> bool {
        self.handlers
            .get(service)
            .is_some_and(|types| types.contains(event_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flow_agrees_with_the_contract_and_the_services_handlers() {
        assert_eq!(
            flow_problems(&Names::default()).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_map_follows_the_handlers_the_services_register() {
        let map = flow_map(&Names::default()).unwrap();
        let created = map.route("order.created");
        assert_eq!(created.emitter, Some("orders"));
        assert_eq!(created.handlers, ["inventory"]);
        assert_eq!(map.route("inventory.reserved").handlers, ["payments"]);
        assert_eq!(map.route("payment.captured").handlers, ["shipping"]);
        assert_eq!(map.route("shipment.scheduled").handlers, ["orders"]);
        let mut undo = map.route("order.cancelled").handlers;
        undo.sort_unstable();
        assert_eq!(undo, ["inventory", "payments", "shipping"]);
        assert!(map.route("order.confirmed").handlers.is_empty());
        assert!(map.consumers().all(|(_, tiers)| !tiers.is_empty()));
    }

    #[test]
    fn the_order_flows_deadline_is_the_one_orders_keeps() {
        let order = flow_named("order").unwrap();
        let orders = orders_service::Settings::default();
        assert_eq!(order.deadline.default, orders.saga_timeout);
        // Users is only listened to (cached copies): it owes the saga nothing.
        let participants = order.participants();
        assert_eq!(
            participants,
            ["inventory", "payments", "shipping", "orders"]
        );
        let unknown = flow_named("refund").unwrap_err().to_string();
        assert!(unknown.contains("the flows are order, return"), "{unknown}");
    }

    #[test]
    fn the_return_flows_deadline_is_the_one_orders_keeps_and_only_shipping_undoes() {
        let returns = flow_named("return").unwrap();
        let orders = orders_service::Settings::default();
        assert_eq!(returns.deadline.default, orders.return_timeout);
        // Inventory and payments act once a return closed, which nothing undoes.
        let owing: Vec<&str> = returns
            .compensations
            .iter()
            .map(|owed| owed.service)
            .collect();
        assert_eq!(owing, ["shipping"]);
    }
}
