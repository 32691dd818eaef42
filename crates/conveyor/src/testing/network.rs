//! Several services' harnesses passing each other's events: a whole flow in one process.

use std::collections::VecDeque;

use super::handling::{Emitted, Handling, HarnessError};
use super::harness::Harness;
use crate::envelope::Envelope;
use crate::event::Event;

/// More deliveries than this from one event means handlers answering each other for ever.
const MAX_DELIVERIES: usize = 10_000;

/// Services' [`Harness`]es, each on its own database, joined as the events exchange joins
/// them: an event goes to every service that handles its type, and what they emit goes on,
/// until nothing is left. Retries are handed back at once (no tier delays).
pub struct Network {
    harnesses: Vec<Harness>,
}

/// One delivery in a [`Network`]: which service got which event, and what became of it.
#[derive(Debug)]
pub struct Step {
    /// The service that got the event.
    pub service: String,
    /// The event delivered.
    pub event: Envelope,
    /// What the service's consumer did with it.
    pub handling: Handling,
}

/// Every delivery a published event led to, in the order they happened.
#[derive(Debug, Default)]
pub struct Trail(Vec<Step>);

impl Network {
    /// Joins `harnesses`, one per service.
    pub fn new(harnesses: impl IntoIterator<Item = Harness>) -> Self {
        Self {
            harnesses: harnesses.into_iter().collect(),
        }
    }

    /// The harness of `service`, to arrange its data or call its code.
    ///
    /// # Errors
    /// [`HarnessError::UnknownService`] when no harness has that name.
    pub fn harness(&mut self, service: &str) -> Result<&mut Harness, HarnessError> {
        self.harnesses
            .iter_mut()
            .find(|harness| harness.service() == service)
            .ok_or_else(|| HarnessError::UnknownService(service.to_owned()))
    }

    /// Delivers `event` to every service that handles its type, then every event they emit,
    /// until the flow settles.
    ///
    /// # Errors
    /// [`HarnessError::Database`] when a batch's transaction fails, and
    /// [`HarnessError::Endless`] past ten thousand deliveries.
    pub async fn publish(&mut self, event: Envelope) -> Result<Trail, HarnessError> {
        self.carry(VecDeque::from([event])).await
    }

    /// Carries on the events the services' own code wrote to their outboxes since the last
    /// look (an HTTP handler placing an order, say), as their relays would publish them.
    ///
    /// # Errors
    /// As [`Network::publish`].
    pub async fn settle(&mut self) -> Result<Trail, HarnessError> {
        let mut pending = VecDeque::new();
        for harness in &mut self.harnesses {
            pending.extend(harness.take_emitted().await?.0);
        }
        self.carry(pending).await
    }

    async fn carry(&mut self, mut pending: VecDeque<Envelope>) -> Result<Trail, HarnessError> {
        let mut trail = Trail::default();
        while let Some(event) = pending.pop_front() {
            for harness in &mut self.harnesses {
                if !harness.handles(&event.event_type) {
                    continue;
                }
                let mut handling = harness.deliver(&event).await?;
                loop {
                    if let Handling::Handled(emitted) = &handling {
                        pending.extend(emitted.envelopes().iter().cloned());
                    }
                    let retry = match &handling {
                        Handling::Retry(retry) => Some(harness.retry(retry).await?),
                        _ => None,
                    };
                    trail.0.push(Step {
                        service: harness.service().to_owned(),
                        event: event.clone(),
                        handling,
                    });
                    if trail.0.len() > MAX_DELIVERIES {
                        return Err(HarnessError::Endless(MAX_DELIVERIES));
                    }
                    match retry {
                        Some(next) => handling = next,
                        None => break,
                    }
                }
            }
        }
        Ok(trail)
    }
}

impl Trail {
    /// Every delivery, in the order it happened.
    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    /// Every event handlers emitted along the trail, in order.
    pub fn emitted(&self) -> Emitted {
        Emitted(
            self.0
                .iter()
                .filter_map(|step| match &step.handling {
                    Handling::Handled(emitted) => Some(emitted.envelopes().iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect(),
        )
    }

    /// The one emitted event of type `E` along the trail.
    ///
    /// # Errors
    /// As [`Emitted::one`].
    pub fn one<E: Event>(&self) -> Result<E, HarnessError> {
        self.emitted().one()
    }

    /// The deliveries that did not end handled or as duplicates, described: empty when every
    /// handler succeeded.
    pub fn failures(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|step| !matches!(step.handling, Handling::Handled(_) | Handling::Duplicate))
            .map(|step| {
                format!(
                    "{} on {}: {:?}",
                    step.service, step.event.event_type, step.handling
                )
            })
            .collect()
    }
}
