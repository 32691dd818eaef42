//! Handling a batch of deliveries in one transaction with the inbox.
//!
//! The fast path runs every handler in one transaction and commits once. If any handler
//! fails, that transaction is rolled back and the batch is handled again with a savepoint
//! per message, so one failure rolls back only its own message.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use lapin::message::Delivery;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use super::Registry;
use super::handler::{DynHandler, EventMeta, HandleFailure, HandlerContext, HandlerError};
use super::outcome::{DeadLetterKind, Outcome};
use crate::envelope::Envelope;
use crate::headers;
use crate::trace_context;

/// A delivery ready to hand to its handler.
struct Decoded {
    envelope: Envelope,
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
}

fn decode(delivery: &Delivery, registry: &Registry) -> Result<Decoded, Outcome> {
    let amqp_headers = delivery.properties.headers().clone().unwrap_or_default();
    let previous_attempts = headers::get_u32(&amqp_headers, headers::ATTEMPTS).unwrap_or(0);
    let envelope = Envelope::from_bytes(&delivery.data).map_err(|error| {
        Outcome::dead_letter(
            DeadLetterKind::Malformed,
            error.to_string(),
            previous_attempts,
        )
    })?;
    let handler = registry
        .handlers
        .get(&envelope.event_type)
        .cloned()
        .ok_or_else(|| {
            let error = format!(
                "no handler for event type {:?} in service {}",
                envelope.event_type, registry.service
            );
            Outcome::dead_letter(DeadLetterKind::UnknownType, error, previous_attempts)
        })?;
    if let Some(contract) = &registry.contract {
        contract.check(&envelope).map_err(|violation| {
            Outcome::dead_letter(DeadLetterKind::Schema, violation.message, previous_attempts)
        })?;
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
        event_type: envelope.event_type.clone(),
        subject: envelope.subject.clone(),
        correlation_id: envelope.correlationid,
        previous_attempts,
    };
    Ok(Decoded {
        envelope,
        meta,
        handler,
        span,
    })
}

/// Handles `batch`, committing the inbox rows, the handlers' changes and their follow-up
/// events together. Returns one outcome per delivery, in order.
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
    if let Some(outcomes) = process_together(registry, pool, batch).await? {
        return Ok(outcomes);
    }
    process_one_by_one(registry, pool, batch).await
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

/// The fast path; `None` when a handler failed and the batch must go one by one.
async fn process_together(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let ids: Vec<Uuid> = batch
        .iter()
        .filter_map(|incoming| {
            incoming
                .decoded
                .as_ref()
                .ok()
                .map(|decoded| decoded.meta.id)
        })
        .collect();
    let mut fresh: HashSet<Uuid> = sqlx::query_scalar(
        "INSERT INTO conveyor.inbox (consumer, message_id) SELECT $1, UNNEST($2::uuid[])
         ON CONFLICT DO NOTHING RETURNING message_id",
    )
    .bind(&registry.service)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut outcomes = Vec::with_capacity(batch.len());
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
        if run_handler(registry, &mut tx, decoded).await.is_err() {
            tx.rollback().await?;
            return Ok(None);
        }
        outcomes.push(Outcome::Handled);
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

async fn process_one_by_one(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for incoming in batch {
        let decoded = match &incoming.decoded {
            Ok(decoded) => decoded,
            Err(outcome) => {
                outcomes.push(outcome.clone());
                continue;
            }
        };
        sqlx::query("SAVEPOINT conveyor_message")
            .execute(&mut *tx)
            .await?;
        let claimed = sqlx::query(
            "INSERT INTO conveyor.inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&registry.service)
        .bind(decoded.meta.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            sqlx::query("RELEASE SAVEPOINT conveyor_message")
                .execute(&mut *tx)
                .await?;
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        match run_handler(registry, &mut tx, decoded).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT conveyor_message")
                    .execute(&mut *tx)
                    .await?;
                outcomes.push(Outcome::Handled);
            }
            Err(failure) => {
                sqlx::query("ROLLBACK TO SAVEPOINT conveyor_message")
                    .execute(&mut *tx)
                    .await?;
                outcomes.push(failure_outcome(registry, &decoded.meta, failure));
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn run_handler(
    registry: &Registry,
    tx: &mut PgConnection,
    decoded: &Decoded,
) -> Result<(), HandleFailure> {
    let mut ctx = HandlerContext::new(tx, &decoded.meta, &registry.outbox, &registry.service);
    let data = decoded.envelope.data.clone();
    let call = decoded.handler.call(data, &mut ctx);
    let result = AssertUnwindSafe(call)
        .catch_unwind()
        .instrument(decoded.span.clone())
        .await;
    match result {
        Ok(outcome) => outcome,
        Err(panic) => Err(HandleFailure::Panic(panic_message(panic.as_ref()))),
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
        HandleFailure::Schema(error) => {
            Outcome::dead_letter(DeadLetterKind::Schema, error, attempts)
        }
        HandleFailure::Panic(error) => {
            Outcome::dead_letter(DeadLetterKind::Permanent, error, attempts)
        }
        HandleFailure::Handler(HandlerError::Permanent(error)) => {
            Outcome::dead_letter(DeadLetterKind::Permanent, format!("{error:#}"), attempts)
        }
        HandleFailure::Handler(HandlerError::Transient(error)) => {
            Outcome::transient(&registry.retry_tiers, attempts, format!("{error:#}"))
        }
    };
    tracing::warn!(
        service = %registry.service, event_id = %meta.id, event_type = %meta.event_type,
        outcome = ?outcome, "Handler failed."
    );
    outcome
}
