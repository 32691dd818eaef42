//! What a service implements to handle one event type, and what its handler may touch.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::event::Event;
use crate::outbox::{Outbox, OutboxError};

/// Handles one event type for one service.
///
/// The handler runs inside the transaction that also records the message in the inbox and
/// holds the follow-up events it emits: it should change nothing outside `ctx.tx()`, because
/// a failed batch is rolled back and handled again.
pub trait EventHandler: Send + Sync + 'static {
    /// The event handled; its [`Event::TYPE`] is the routing key the service's queue binds.
    /// Data that does not decode into it is dead-lettered as `schema`.
    type Event: Event;

    /// The keys this event is serialized on: two events of this service that share a key
    /// are never handled at the same time, by two workers or two processes. The default is
    /// the envelope's `subject` (the order id of every saga event); none means no lock.
    fn keys(&self, event: &Self::Event, meta: &EventMeta) -> Vec<String> {
        let _ = event;
        meta.subject.iter().cloned().collect()
    }

    /// Handles `event` in `ctx`'s transaction; an error decides whether the message is
    /// retried or dead-lettered (see [`HandlerError`]).
    fn handle(
        &self,
        event: Self::Event,
        ctx: &mut HandlerContext<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// How a handler failed, which decides where the message goes.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Will fail again however often it is retried: dead-lettered at once as `permanent`.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
    /// May succeed later: retried through the delay tiers, then dead-lettered as
    /// `retries-exhausted`.
    #[error("{0:#}")]
    Transient(anyhow::Error),
}

impl HandlerError {
    /// A failure that retrying cannot fix.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(error.into())
    }

    /// A failure that may pass if retried later.
    pub fn transient(error: impl Into<anyhow::Error>) -> Self {
        Self::Transient(error.into())
    }
}

/// Database errors are transient, except those that say the data itself is wrong.
impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        let violates_constraint = error.as_database_error().is_some_and(|db| {
            matches!(
                db.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            )
        });
        // Data the database refuses (a NUL in text, a value too long) is refused every time.
        let refused_data =
            super::db_error::classify(&error) == super::db_error::DbFailure::RefusedData;
        if violates_constraint || refused_data {
            Self::Permanent(error.into())
        } else {
            Self::Transient(error.into())
        }
    }
}

/// A follow-up event that breaks its contract will break it on every retry.
impl From<OutboxError> for HandlerError {
    fn from(error: OutboxError) -> Self {
        match error {
            OutboxError::Contract { .. } => Self::Permanent(error.into()),
            OutboxError::Database { .. } | OutboxError::Cancel { .. } => {
                Self::Transient(error.into())
            }
        }
    }
}

/// The event's attributes other than its data.
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// The event's unique id, on which the inbox dedupes.
    pub id: Uuid,
    /// The event type (`order.created`).
    pub event_type: String,
    /// The aggregate the event is about (an order id, a sku), if any.
    pub subject: Option<String>,
    /// The flow the event belongs to (the saga's id).
    pub correlation_id: Uuid,
    /// Failed attempts before this one (0 on first delivery).
    pub previous_attempts: u32,
}

/// What a handler works with: the transaction, the event's attributes, and the outbox.
pub struct HandlerContext<'t> {
    tx: &'t mut PgConnection,
    meta: &'t EventMeta,
    outbox: &'t Outbox,
    service: &'t str,
    after_commit: Vec<AfterCommit>,
}

/// Work to do once a handler's transaction committed.
pub(crate) type AfterCommit = Box<dyn FnOnce() + Send>;

impl<'t> HandlerContext<'t> {
    pub(crate) fn new(
        tx: &'t mut PgConnection,
        meta: &'t EventMeta,
        outbox: &'t Outbox,
        service: &'t str,
    ) -> Self {
        Self {
            tx,
            meta,
            outbox,
            service,
            after_commit: Vec::new(),
        }
    }

    /// Runs `work` once this handling has committed, and never if it is rolled back (a
    /// failed handler, a batch handled again): for what must count each event once, such
    /// as metrics.
    pub fn after_commit(&mut self, work: impl FnOnce() + Send + 'static) {
        self.after_commit.push(Box::new(work));
    }

    /// The service handling the event (`payments`), for what a handler records beside its
    /// effect (metrics, logs).
    pub fn service(&self) -> &str {
        self.service
    }

    pub(crate) fn into_after_commit(self) -> Vec<AfterCommit> {
        self.after_commit
    }

    /// The transaction this delivery is handled in; it commits only if the handler succeeds.
    pub fn tx(&mut self) -> &mut PgConnection {
        self.tx
    }

    /// The attributes of the event being handled.
    pub fn event(&self) -> &EventMeta {
        self.meta
    }

    /// Emits a follow-up event in the same transaction, in the same flow (correlation id)
    /// and caused by the event being handled, about `subject` (an order id, a sku).
    ///
    /// # Errors
    /// [`HandlerError::Permanent`] when the event breaks its contract,
    /// [`HandlerError::Transient`] when the outbox insert fails.
    pub async fn emit<E: Event>(
        &mut self,
        subject: impl std::fmt::Display,
        event: &E,
    ) -> Result<(), HandlerError> {
        let envelope = Envelope::of(self.service, event)
            .with_subject(subject.to_string())
            .caused_by(self.meta.id, self.meta.correlation_id);
        self.outbox.add(self.tx, &envelope).await?;
        Ok(())
    }

    /// Schedules a follow-up event like [`HandlerContext::emit`], to be sent `delay` of
    /// watched time after this handling commits ([`Outbox::add_after`]): a step that
    /// happens later (a carrier's collection), or a deadline of its own.
    ///
    /// # Errors
    /// As [`HandlerContext::emit`].
    pub async fn emit_after<E: Event>(
        &mut self,
        subject: impl std::fmt::Display,
        event: &E,
        delay: std::time::Duration,
    ) -> Result<(), HandlerError> {
        let envelope = Envelope::of(self.service, event)
            .with_subject(subject.to_string())
            .caused_by(self.meta.id, self.meta.correlation_id);
        self.outbox.add_after(self.tx, &envelope, delay).await?;
        Ok(())
    }

    /// Takes back, in the same transaction, the scheduled events of type `E` about
    /// `subject` (a deadline its flow no longer needs: [`Outbox::add_after`]); answers how
    /// many. Zero when none was scheduled, or one is already on its way: the handler that
    /// receives it must still check that it applies.
    ///
    /// # Errors
    /// [`HandlerError::Transient`] when the delete fails.
    pub async fn cancel_scheduled<E: Event>(
        &mut self,
        subject: impl std::fmt::Display,
    ) -> Result<u64, HandlerError> {
        let subject = subject.to_string();
        Ok(self
            .outbox
            .cancel_scheduled(self.tx, E::TYPE, &subject)
            .await?)
    }
}

/// Why a handler's run did not succeed, before it is routed to a retry or dead letter.
#[derive(Debug)]
pub(crate) enum HandleFailure {
    Handler(HandlerError),
    Panic(String),
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event decoded for its handler before any transaction starts, with its keys.
pub(crate) struct Prepared {
    event: Box<dyn Any + Send + Sync>,
    pub(crate) keys: Vec<String>,
}

/// An [`EventHandler`] with its event type erased, so one consumer holds many.
pub(crate) trait DynHandler: Send + Sync {
    /// Decodes `data` into the handler's event.
    ///
    /// # Errors
    /// Why the data does not fit the event type (dead-lettered as `schema`).
    fn prepare(&self, data: Value, meta: &EventMeta) -> Result<Prepared, String>;

    fn call<'a>(
        &'a self,
        prepared: &'a Prepared,
        ctx: &'a mut HandlerContext<'_>,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;
}

impl<H: EventHandler> DynHandler for H {
    fn prepare(&self, data: Value, meta: &EventMeta) -> Result<Prepared, String> {
        let event = serde_json::from_value::<H::Event>(data)
            .map_err(|error| format!("data does not match {}: {error}", H::Event::TYPE))?;
        Ok(Prepared {
            keys: self.keys(&event, meta),
            event: Box::new(event),
        })
    }

    fn call<'a>(
        &'a self,
        prepared: &'a Prepared,
        ctx: &'a mut HandlerContext<'_>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        // The batch may run twice (rolled back, then one by one), so the handler gets a copy.
        let event = prepared.event.downcast_ref::<H::Event>().cloned();
        Box::pin(async move {
            let event = event.ok_or_else(|| {
                HandlerError::permanent(anyhow::anyhow!(
                    "the runtime prepared another type than {}",
                    H::Event::TYPE
                ))
            })?;
            self.handle(event, ctx).await
        })
    }
}
