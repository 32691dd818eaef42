//! The saga's map, taken from the services themselves: for each event type, the service
//! that emits it and the services whose consumers handle it. `conveyor saga trace` reads an
//! order's progress against it: a step waits for its event to be handled by each handler.

use std::collections::BTreeMap;
use std::time::Duration;

use conveyor::Names;

use crate::catalog;
use crate::roster::ServiceName;

/// Who emits an event type and who handles it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub emitter: Option<ServiceName>,
    pub handlers: Vec<ServiceName>,
}

/// Every event type's route, and each consuming service's retry tiers.
#[derive(Debug, Clone, Default)]
pub struct SagaMap {
    routes: BTreeMap<String, Route>,
    retry_tiers: BTreeMap<ServiceName, Vec<Duration>>,
}

impl SagaMap {
    /// From the handlers each service's consumer registers and the events it says it emits.
    ///
    /// # Errors
    /// When a service's event contract does not compile.
    pub fn derive(names: &Names) -> anyhow::Result<Self> {
        let mut routes: BTreeMap<String, Route> = BTreeMap::new();
        let mut retry_tiers = BTreeMap::new();
        for service in ServiceName::all() {
            for event_type in service.emits() {
                routes.entry((*event_type).to_owned()).or_default().emitter = Some(service);
            }
        }
        for consumer in catalog::consumers(names)? {
            let topology = consumer.service_topology();
            let service = ServiceName::parse(&topology.service)?;
            retry_tiers.insert(service, topology.retry_tiers);
            for event_type in topology.event_types {
                routes.entry(event_type).or_default().handlers.push(service);
            }
        }
        Ok(Self {
            routes,
            retry_tiers,
        })
    }

    /// The route of `event_type`; an unknown type has no emitter and no handlers.
    pub fn route(&self, event_type: &str) -> Route {
        self.routes.get(event_type).cloned().unwrap_or_default()
    }

    /// This map with `service` handling `event_type` too, as a service that listens would.
    #[cfg(test)]
    pub(crate) fn with_handler(mut self, event_type: &str, service: ServiceName) -> Self {
        let route = self.routes.entry(event_type.to_owned()).or_default();
        route.handlers.push(service);
        self
    }

    /// The services that consume, with their retry tiers.
    pub fn consumers(&self) -> impl Iterator<Item = (ServiceName, &[Duration])> {
        self.retry_tiers
            .iter()
            .map(|(service, tiers)| (*service, tiers.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_follows_the_handlers_the_services_register() {
        let map = SagaMap::derive(&Names::default()).unwrap();
        let created = map.route("order.created");
        assert_eq!(created.emitter, Some(ServiceName::ORDERS));
        assert_eq!(created.handlers, [ServiceName::INVENTORY]);
        assert_eq!(
            map.route("inventory.reserved").handlers,
            [ServiceName::PAYMENTS]
        );
        assert_eq!(
            map.route("payment.captured").handlers,
            [ServiceName::SHIPPING]
        );
        assert_eq!(
            map.route("shipment.scheduled").handlers,
            [ServiceName::ORDERS]
        );
        let mut undo = map.route("order.cancelled").handlers;
        undo.sort();
        assert_eq!(
            undo,
            [
                ServiceName::INVENTORY,
                ServiceName::PAYMENTS,
                ServiceName::SHIPPING
            ]
        );
        assert!(map.route("order.confirmed").handlers.is_empty());
        assert!(map.consumers().all(|(_, tiers)| !tiers.is_empty()));
    }
}
