//! Handling a batch of deliveries in one transaction with the inbox.
//!
//! The fast path locks the batch's keys, runs every handler in one transaction and commits
//! once. If any handler fails, that transaction is rolled back and the batch is handled
//! again with a savepoint per message, so one failure rolls back only its own message. If
//! another transaction holds one of the keys past the lock timeout, the batch goes one by
//! one without waiting: messages whose key is busy are retried later, the others proceed.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use lapin::message::Delivery;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use super::Registry;
use super::delivery::came_from_retry;
use super::handler::{
    AfterCommit, DynHandler, EventMeta, HandleFailure, HandlerContext, HandlerError, Prepared,
};
use super::key_lock::{self, Locked};
use super::outcome::{DeadLetterKind, Outcome};
use crate::envelope::Envelope;
use crate::headers;
use crate::trace_context;

/// A delivery ready to hand to its handler.
struct Decoded {
    prepared: Prepared,
    meta: EventMeta,
    handler: Arc<dyn DynHandler>,
    span: tracing::Span,
}

/// One delivery and what is known of it before its handler runs.
pub(crate) struct Incoming {
    pub(crate) delivery: Delivery,
    decoded: Result<Decoded, Outcome>,
}

impl Incoming {
    pub(crate) fn decode(delivery: Delivery, registry: &Registry) -> Self {
        let decoded = decode(&delivery, registry);
        if let Err(outcome) = &decoded {
            tracing::warn!(
                service = %registry.service, routing_key = %delivery.routing_key,
                outcome = ?outcome, "Delivery cannot be handled."
            );
        }
        Self { delivery, decoded }
    }

    fn decoded(&self) -> Option<&Decoded> {
        self.decoded.as_ref().ok()
    }

    /// Records this delivery's dead-lettering as a span of its trace, with the reason.
    pub(crate) fn trace_dead_letter(&self, service: &str, kind: DeadLetterKind, error: &str) {
        let reason = kind.as_str();
        let span = match self.decoded() {
            Some(decoded) => tracing::info_span!(
                parent: &decoded.span, "dead-letter", service, reason, error,
                otel.status_code = "ERROR",
            ),
            None => {
                let span = tracing::info_span!(
                    parent: None, "dead-letter", service, reason, error,
                    otel.status_code = "ERROR",
                );
                let amqp_headers = self
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default();
                trace_context::continue_trace(&span, &amqp_headers);
                span
            }
        };
        // The span ends here: it marks the moment the consumer gave up.
        drop(span);
    }

    /// The event's type as decoded, else as the delivery was routed (for metrics).
    pub(crate) fn event_type(&self) -> &str {
        self.decoded()
            .map_or(self.delivery.routing_key.as_str(), |decoded| {
                decoded.meta.event_type.as_str()
            })
    }

    /// The event's id, when the delivery decoded.
    pub(crate) fn event_id(&self) -> Option<Uuid> {
        self.decoded().map(|decoded| decoded.meta.id)
    }

    /// Failed attempts before this delivery, as its retry copy counted them.
    pub(crate) fn previous_attempts(&self) -> u32 {
        self.decoded()
            .map_or(0, |decoded| decoded.meta.previous_attempts)
    }
}

fn decode(delivery: &Delivery, registry: &Registry) -> Result<Decoded, Outcome> {
    let amqp_headers = delivery.properties.headers().clone().unwrap_or_default();
    // Attempts counted by this runtime come back from a retry queue through the default
    // exchange; the same header on a producer's event is not believed.
    let previous_attempts = if came_from_retry(delivery) {
        headers::get_u32(&amqp_headers, headers::ATTEMPTS).unwrap_or(0)
    } else {
        0
    };
    let dead_letter = |kind, error: String| Outcome::dead_letter(kind, error, previous_attempts);
    if delivery.data.len() > registry.max_body_bytes {
        let error = format!(
            "the body of {} bytes is over this consumer's limit of {} bytes (max_body_bytes); \
             events this large belong in storage, with a reference in the event",
            delivery.data.len(),
            registry.max_body_bytes
        );
        return Err(dead_letter(DeadLetterKind::Malformed, error));
    }
    let envelope = Envelope::from_bytes(&delivery.data)
        .map_err(|error| dead_letter(DeadLetterKind::Malformed, error.to_string()))?;
    let handler = registry
        .handlers
        .get(&envelope.event_type)
        .cloned()
        .ok_or_else(|| {
            let error = format!(
                "no handler for event type {:?} in service {}",
                envelope.event_type, registry.service
            );
            dead_letter(DeadLetterKind::UnknownType, error)
        })?;
    registry
        .sources
        .check(
            &envelope.event_type,
            &delivery.properties,
            registry.contract.as_deref(),
        )
        .map_err(|error| dead_letter(DeadLetterKind::ForbiddenSource, error))?;
    if let Some(contract) = &registry.contract {
        contract
            .check(&envelope)
            .map_err(|violation| dead_letter(DeadLetterKind::Schema, violation.message))?;
    }
    let span = tracing::info_span!(
        "handle",
        service = %registry.service,
        event_type = %envelope.event_type,
        event_id = %envelope.id,
        correlation_id = %envelope.correlationid,
        otel.kind = "consumer",
    );
    trace_context::continue_trace(&span, &amqp_headers);
    let meta = EventMeta {
        id: envelope.id,
        event_type: envelope.event_type,
        subject: envelope.subject,
        correlation_id: envelope.correlationid,
        previous_attempts,
    };
    let prepared = handler
        .prepare(envelope.data, &meta)
        .map_err(|error| dead_letter(DeadLetterKind::Schema, error))?;
    Ok(Decoded {
        prepared,
        meta,
        handler,
        span,
    })
}

/// How a one-by-one pass takes its keys' locks.
#[derive(Clone, Copy)]
enum KeyLocks<'a> {
    /// Every key of the batch up front, waiting for each (in ascending order).
    WaitForAll(&'a [i64]),
    /// Each message's own keys just before it, without waiting: a message whose key another
    /// transaction holds is retried later, so one stuck key cannot hold up the others.
    TryEach,
}

/// How the fast path ended.
enum Together {
    Done(Vec<Outcome>),
    /// A handler failed: the batch goes one by one, so only that message is undone.
    HandlerFailed,
    /// A key stayed locked by another transaction past `lock_timeout`.
    KeysBusy,
}

/// Handles `batch`, committing the inbox rows, the handlers' changes and their follow-up
/// events together. Returns one outcome per delivery, in order.
///
/// Before any handler runs, the batch takes the advisory lock of every key its events
/// carry, in one global order, so no other worker or process handles an event with one of
/// those keys until this transaction ends, and two batches never deadlock on them.
///
/// # Errors
/// The database error when the transaction itself fails; nothing was committed and the
/// whole batch should be handled again later.
pub(crate) async fn process(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
) -> Result<Vec<Outcome>, sqlx::Error> {
    if !batch.iter().any(|incoming| incoming.decoded.is_ok()) {
        return Ok(outcomes_without_handlers(batch));
    }
    let keys = key_lock::lock_ids(
        &registry.service,
        batch
            .iter()
            .filter_map(Incoming::decoded)
            .flat_map(|decoded| decoded.prepared.keys.iter().map(String::as_str)),
    );
    match process_together(registry, pool, batch, &keys).await? {
        Together::Done(outcomes) => return Ok(outcomes),
        Together::HandlerFailed => {
            let waited = process_one_by_one(registry, pool, batch, KeyLocks::WaitForAll(&keys));
            if let Some(outcomes) = waited.await? {
                return Ok(outcomes);
            }
        }
        Together::KeysBusy => {}
    }
    let outcomes = process_one_by_one(registry, pool, batch, KeyLocks::TryEach).await?;
    Ok(outcomes.unwrap_or_default())
}

fn outcomes_without_handlers(batch: &[Incoming]) -> Vec<Outcome> {
    batch
        .iter()
        .map(|incoming| match &incoming.decoded {
            Ok(_) => Outcome::Handled,
            Err(outcome) => outcome.clone(),
        })
        .collect()
}

/// The fast path: every message in one transaction, committed once.
async fn process_together(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
    keys: &[i64],
) -> Result<Together, sqlx::Error> {
    let mut tx = registry.begin(pool).await?;
    let (ids, attempts): (Vec<Uuid>, Vec<i32>) = batch
        .iter()
        .filter_map(Incoming::decoded)
        .map(|decoded| {
            (
                decoded.meta.id,
                attempt_number(decoded.meta.previous_attempts),
            )
        })
        .unzip();
    let claims = Claims {
        ids: &ids,
        attempts: &attempts,
    };
    let Some(mut fresh) = lock_and_claim(&mut tx, &registry.service, keys, claims).await? else {
        tx.rollback().await?;
        return Ok(Together::KeysBusy);
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut after_commit = Vec::new();
    for incoming in batch {
        let decoded = match &incoming.decoded {
            Ok(decoded) => decoded,
            Err(outcome) => {
                outcomes.push(outcome.clone());
                continue;
            }
        };
        // `remove` also makes a second copy of the same id within this batch a duplicate.
        if !fresh.remove(&decoded.meta.id) {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        match run_handler(registry, &mut tx, decoded).await {
            Ok(work) => after_commit.extend(work),
            Err(_) => {
                tx.rollback().await?;
                return Ok(Together::HandlerFailed);
            }
        }
        outcomes.push(Outcome::Handled);
    }
    tx.commit().await?;
    run_after_commit(after_commit);
    Ok(Together::Done(outcomes))
}

/// The inbox's number of a delivery: 1 for the first, one more per failed attempt before.
fn attempt_number(previous_attempts: u32) -> i32 {
    i32::try_from(previous_attempts.saturating_add(1)).unwrap_or(i32::MAX)
}

/// A batch's message ids, each with its delivery's attempt number.
#[derive(Clone, Copy)]
struct Claims<'a> {
    ids: &'a [Uuid],
    attempts: &'a [i32],
}

/// Takes the batch's key locks (in the order given) and records its message ids in the
/// inbox, in one round trip; returns the ids not seen before, or `None` when a key stayed
/// busy past the lock timeout (the transaction must be rolled back).
async fn lock_and_claim(
    tx: &mut PgConnection,
    service: &str,
    keys: &[i64],
    claims: Claims<'_>,
) -> Result<Option<HashSet<Uuid>>, sqlx::Error> {
    // The CTE's aggregate takes every lock, in array order, before the first inbox row.
    let claimed = sqlx::query_scalar(
        "WITH locked AS MATERIALIZED (
             SELECT count(pg_advisory_xact_lock(key)) AS taken FROM unnest($3::bigint[]) AS key
         )
         INSERT INTO conveyor.inbox (consumer, message_id, attempt)
         SELECT $1, claim.message_id, claim.attempt
         FROM locked, unnest($2::uuid[], $4::int[]) AS claim (message_id, attempt)
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind(service)
    .bind(claims.ids)
    .bind(keys)
    .bind(claims.attempts)
    .fetch_all(tx)
    .await;
    match claimed {
        Ok(fresh) => Ok(Some(fresh.into_iter().collect())),
        Err(error) if key_lock::is_lock_conflict(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// One transaction with a savepoint per message, so a failure undoes only its own message.
/// `None` when waiting for the batch's keys timed out (only with [`KeyLocks::WaitForAll`]).
async fn process_one_by_one(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
    locks: KeyLocks<'_>,
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let mut tx = registry.begin(pool).await?;
    if let KeyLocks::WaitForAll(keys) = locks
        && key_lock::lock_all(&mut tx, keys).await? == Locked::TimedOut
    {
        tx.rollback().await?;
        return Ok(None);
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut after_commit = Vec::new();
    for incoming in batch {
        let outcome = match &incoming.decoded {
            Ok(decoded) => {
                process_in_savepoint(registry, &mut tx, decoded, locks, &mut after_commit).await?
            }
            Err(outcome) => outcome.clone(),
        };
        outcomes.push(outcome);
    }
    tx.commit().await?;
    run_after_commit(after_commit);
    Ok(Some(outcomes))
}

async fn process_in_savepoint(
    registry: &Registry,
    tx: &mut PgConnection,
    decoded: &Decoded,
    locks: KeyLocks<'_>,
    after_commit: &mut Vec<AfterCommit>,
) -> Result<Outcome, sqlx::Error> {
    sqlx::query("SAVEPOINT conveyor_message")
        .execute(&mut *tx)
        .await?;
    if matches!(locks, KeyLocks::TryEach) {
        let keys = key_lock::lock_ids(
            &registry.service,
            decoded.prepared.keys.iter().map(String::as_str),
        );
        if !key_lock::try_lock_all(tx, &keys).await? {
            rollback_to_savepoint(tx).await?;
            return Ok(busy_key_outcome(registry, decoded));
        }
    }
    let claimed = sqlx::query(
        "INSERT INTO conveyor.inbox (consumer, message_id, attempt) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(&registry.service)
    .bind(decoded.meta.id)
    .bind(attempt_number(decoded.meta.previous_attempts))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        release_savepoint(tx).await?;
        return Ok(Outcome::Duplicate);
    }
    match run_handler(registry, tx, decoded).await {
        Ok(work) => {
            release_savepoint(tx).await?;
            after_commit.extend(work);
            Ok(Outcome::Handled)
        }
        Err(failure) => {
            rollback_to_savepoint(tx).await?;
            Ok(failure_outcome(registry, &decoded.meta, failure))
        }
    }
}

async fn release_savepoint(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("RELEASE SAVEPOINT conveyor_message")
        .execute(tx)
        .await
        .map(drop)
}

/// Undoes the message's work; a key lock taken since the savepoint is released with it.
async fn rollback_to_savepoint(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("ROLLBACK TO SAVEPOINT conveyor_message")
        .execute(tx)
        .await
        .map(drop)
}

/// Runs the handler; on success, answers what it asked to run after the commit.
async fn run_handler(
    registry: &Registry,
    tx: &mut PgConnection,
    decoded: &Decoded,
) -> Result<Vec<AfterCommit>, HandleFailure> {
    let mut ctx = HandlerContext::new(tx, &decoded.meta, &registry.outbox, &registry.service);
    let call = decoded.handler.call(&decoded.prepared, &mut ctx);
    let started = std::time::Instant::now();
    let result = AssertUnwindSafe(call)
        .catch_unwind()
        .instrument(decoded.span.clone())
        .await;
    crate::metrics::metrics()
        .handler_duration
        .with_label_values(&[registry.service.as_str(), decoded.meta.event_type.as_str()])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(())) => Ok(ctx.into_after_commit()),
        Ok(Err(error)) => Err(HandleFailure::Handler(error)),
        Err(panic) => Err(HandleFailure::Panic(panic_message(panic.as_ref()))),
    }
}

fn run_after_commit(work: Vec<AfterCommit>) {
    for job in work {
        job();
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    format!("handler panicked: {text}")
}

fn failure_outcome(registry: &Registry, meta: &EventMeta, failure: HandleFailure) -> Outcome {
    let attempts = meta.previous_attempts + 1;
    let outcome = match failure {
        HandleFailure::Panic(error) => {
            Outcome::dead_letter(DeadLetterKind::Permanent, error, attempts)
        }
        HandleFailure::Handler(HandlerError::Permanent(error)) => {
            Outcome::dead_letter(DeadLetterKind::Permanent, format!("{error:#}"), attempts)
        }
        HandleFailure::Handler(HandlerError::Transient(error))
            if key_lock::caused_by_lock_conflict(&error) =>
        {
            Outcome::conflict(
                &registry.retry_tiers,
                meta.previous_attempts,
                format!("{error:#}"),
            )
        }
        HandleFailure::Handler(HandlerError::Transient(error)) => {
            Outcome::transient(&registry.retry_tiers, attempts, format!("{error:#}"))
        }
    };
    log_failure(registry, meta, &outcome);
    outcome
}

/// A message whose key another transaction held: retried without counting as a failure.
fn busy_key_outcome(registry: &Registry, decoded: &Decoded) -> Outcome {
    let error = format!(
        "another transaction held the lock of key {:?} for longer than {:?}",
        decoded.prepared.keys, registry.lock_timeout
    );
    let outcome = Outcome::conflict(&registry.retry_tiers, decoded.meta.previous_attempts, error);
    log_failure(registry, &decoded.meta, &outcome);
    outcome
}

fn log_failure(registry: &Registry, meta: &EventMeta, outcome: &Outcome) {
    tracing::warn!(
        service = %registry.service, event_id = %meta.id, event_type = %meta.event_type,
        outcome = ?outcome, "Handler failed."
    );
}
