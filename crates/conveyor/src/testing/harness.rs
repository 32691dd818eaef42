//! One service's consumer on its own database, stepped one batch at a time.

use std::fmt::Display;

use lapin::message::Delivery;
use sqlx::PgPool;

use super::handling::{Emitted, Handling, HarnessError, Retry};
use crate::consumer::batch::{self, Incoming};
use crate::consumer::{Consumer, Outcome};
use crate::envelope::Envelope;
use crate::event::Event;
use crate::publisher::OutgoingMessage;
use crate::store;
use crate::trace_context::TraceHeaders;

/// Runs a service's real handlers against its real database, inbox and outbox included,
/// with no broker: see [the module](super) for what it models and what it does not.
pub struct Harness {
    consumer: Consumer,
    pool: PgPool,
    /// The last outbox row read: rows after it are new.
    outbox_read_to: i64,
    next_delivery_tag: u64,
}

impl Harness {
    /// A harness for `consumer` on `pool`'s database (migrated: the service's own tables
    /// exist). Installs the runtime's inbox and outbox tables if they are missing; outbox
    /// rows already there are not counted as emitted.
    ///
    /// # Errors
    /// [`HarnessError::Database`] when the database cannot be reached or installed.
    pub async fn new(consumer: Consumer, pool: PgPool) -> Result<Self, HarnessError> {
        store::install(&pool).await?;
        let outbox_read_to = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM conveyor.outbox")
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            consumer,
            pool,
            outbox_read_to,
            next_delivery_tag: 1,
        })
    }

    /// The consumer's service name (its inbox key and queue name).
    pub fn service(&self) -> &str {
        self.consumer.registry().service()
    }

    /// The service's database, to arrange data before a delivery and check it after.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the service has a handler for `event_type` (its queue binds it).
    pub fn handles(&self, event_type: &str) -> bool {
        self.consumer.registry().handles(event_type)
    }

    /// An envelope for `event` as the service `source` would publish it, about `subject`
    /// (the key its handlers lock on: an order id, a sku), starting a flow of its own.
    pub fn envelope<E: Event>(&self, source: &str, subject: impl Display, event: &E) -> Envelope {
        Envelope::of(source, event).with_subject(subject.to_string())
    }

    /// Delivers `envelope` as the broker would from the events exchange, handles it in one
    /// batch and returns what became of it.
    ///
    /// # Errors
    /// [`HarnessError::Database`] when the batch's transaction itself failed (nothing was
    /// committed; the broker would deliver it again).
    pub async fn deliver(&mut self, envelope: &Envelope) -> Result<Handling, HarnessError> {
        let mut handled = self.deliver_batch(std::slice::from_ref(envelope)).await?;
        Ok(handled.remove(0))
    }

    /// Delivers `envelopes` as one batch (one transaction, as a consumer with that many
    /// deliveries in hand), returning one handling each, in order.
    ///
    /// # Errors
    /// As [`Harness::deliver`].
    pub async fn deliver_batch(
        &mut self,
        envelopes: &[Envelope],
    ) -> Result<Vec<Handling>, HarnessError> {
        let names = self.consumer.registry().names();
        let deliveries = envelopes
            .iter()
            .map(|envelope| OutgoingMessage::event(names, envelope, &TraceHeaders::new()))
            .collect::<Vec<_>>();
        self.step(deliveries, false).await
    }

    /// Hands back a retried delivery at once, as its retry tier would after its delay,
    /// with the attempts it counted.
    ///
    /// # Errors
    /// As [`Harness::deliver`].
    pub async fn retry(&mut self, retry: &Retry) -> Result<Handling, HarnessError> {
        let registry = self.consumer.registry();
        // A tier hands its copies back through the default exchange to the service's queue.
        let back = OutgoingMessage {
            exchange: String::new(),
            routing_key: registry.names().service_queue(registry.service()),
            body: retry.copy.body.clone(),
            properties: retry.copy.properties.clone(),
        };
        let mut handled = self.step(vec![back], true).await?;
        Ok(handled.remove(0))
    }

    /// The events added to the outbox since the last read by anything other than a
    /// delivery here: an HTTP handler, a test's own code.
    ///
    /// # Errors
    /// [`HarnessError::Database`], or [`HarnessError::Outbox`] for a row that is not an
    /// envelope.
    pub async fn take_emitted(&mut self) -> Result<Emitted, HarnessError> {
        Ok(Emitted(self.read_outbox().await?))
    }

    async fn step(
        &mut self,
        messages: Vec<OutgoingMessage>,
        redelivered: bool,
    ) -> Result<Vec<Handling>, HarnessError> {
        let registry = self.consumer.registry();
        let incoming = messages
            .into_iter()
            .map(|message| {
                let tag = self.next_delivery_tag;
                self.next_delivery_tag += 1;
                let mut delivery = Delivery::mock(
                    tag,
                    message.exchange.into(),
                    message.routing_key.into(),
                    redelivered,
                    message.body,
                );
                delivery.properties = message.properties;
                Incoming::decode(delivery, registry)
            })
            .collect::<Vec<_>>();
        let outcomes = batch::process(registry, &self.pool, &incoming).await?;
        let written = self.read_outbox().await?;
        Ok(incoming
            .iter()
            .zip(outcomes)
            .map(|(incoming, outcome)| self.handling(incoming, outcome, &written))
            .collect())
    }

    fn handling(&self, incoming: &Incoming, outcome: Outcome, written: &[Envelope]) -> Handling {
        let registry = self.consumer.registry();
        match outcome {
            Outcome::Handled => {
                let id = incoming.event_id();
                let caused = written
                    .iter()
                    .filter(|event| id.is_some() && event.causationid == id)
                    .cloned()
                    .collect();
                Handling::Handled(Emitted(caused))
            }
            Outcome::Duplicate => Handling::Duplicate,
            Outcome::Retry {
                delay,
                attempts,
                ref error,
            } => match outcome.message(registry.names(), registry.service(), &incoming.delivery) {
                Some(copy) => Handling::Retry(Box::new(Retry {
                    attempts,
                    delay,
                    error: error.clone(),
                    copy,
                })),
                None => unreachable!("Outcome::message gives every retry its copy"),
            },
            Outcome::DeadLetter {
                kind,
                error,
                attempts,
            } => Handling::DeadLetter {
                kind,
                error,
                attempts,
            },
        }
    }

    async fn read_outbox(&mut self) -> Result<Vec<Envelope>, HarnessError> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, payload FROM conveyor.outbox WHERE id > $1 ORDER BY id")
                .bind(self.outbox_read_to)
                .fetch_all(&self.pool)
                .await?;
        let mut events = Vec::with_capacity(rows.len());
        for (id, payload) in rows {
            let envelope =
                Envelope::from_bytes(&payload).map_err(|error| HarnessError::Outbox {
                    id,
                    error: error.to_string(),
                })?;
            events.push(envelope);
            self.outbox_read_to = id;
        }
        Ok(events)
    }
}
