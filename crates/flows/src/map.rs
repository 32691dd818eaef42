//! Who emits each event type and who handles it, as the running services say: the map a
//! run's timeline is read against. A step waits for its event to be handled by each of the
//! event's handlers, whether it takes part in the flow or only listens. The system that
//! knows its services builds it ([`FlowMap::emits`], [`FlowMap::consumes`]).

use std::collections::BTreeMap;
use std::time::Duration;

/// Who emits an event type and who handles it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub emitter: Option<&'static str>,
    pub handlers: Vec<&'static str>,
}

/// Every event type's route, and each consuming service's retry tiers.
#[derive(Debug, Clone, Default)]
pub struct FlowMap {
    routes: BTreeMap<String, Route>,
    retry_tiers: BTreeMap<&'static str, Vec<Duration>>,
}

impl FlowMap {
    /// `service` emits `event_types`.
    #[must_use]
    pub fn emits(mut self, service: &'static str, event_types: &[&str]) -> Self {
        for event_type in event_types {
            self.routes
                .entry((*event_type).to_owned())
                .or_default()
                .emitter = Some(service);
        }
        self
    }

    /// `service`'s consumer handles `event_types` and retries on `retry_tiers`.
    #[must_use]
    pub fn consumes(
        mut self,
        service: &'static str,
        event_types: impl IntoIterator<Item = String>,
        retry_tiers: Vec<Duration>,
    ) -> Self {
        self.retry_tiers.insert(service, retry_tiers);
        for event_type in event_types {
            self.routes
                .entry(event_type)
                .or_default()
                .handlers
                .push(service);
        }
        self
    }

    /// The route of `event_type`; an unknown type has no emitter and no handlers.
    pub fn route(&self, event_type: &str) -> Route {
        self.routes.get(event_type).cloned().unwrap_or_default()
    }

    /// The services that consume, with their retry tiers.
    pub fn consumers(&self) -> impl Iterator<Item = (&'static str, &[Duration])> {
        self.retry_tiers
            .iter()
            .map(|(service, tiers)| (*service, tiers.as_slice()))
    }
}
