//! The relay's side of the outbox table: reading unsent rows, turning them into messages,
//! and recording each one's fate: sent (out of the outbox, into the log of what was sent),
//! refused for now (its error and count kept, sent again), or parked (a message the broker
//! will never take).
//!
//! Which refusals park a row: only those that will repeat for this row alone, whatever the
//! broker's state. A nack ("not stored, not now": a quorum queue electing a new leader after
//! a node died, a queue at its `reject-publish` limit) or an unroutable return (the topology
//! is missing) is not one of them; the row is sent again with backoff for as long as it
//! takes. The ones that are: a body over the broker's `max_message_size` (checked here before
//! sending, against [`super::RelayOptions::max_message_bytes`]), and any other
//! PRECONDITION_FAILED channel close that the relay's one-by-one pass pins on a single row
//! (`isolate`).

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::OutboxRelay;
use crate::envelope::EnvelopeHead;
use crate::publisher::{OutgoingMessage, PublishError};

/// An unsent row and the message it becomes.
pub(super) struct Pending {
    pub(super) id: i64,
    pub(super) message: OutgoingMessage,
    /// The envelope's flow and subject, for the log of what was sent.
    correlation_id: Option<Uuid>,
    subject: Option<String>,
}

impl OutboxRelay {
    /// Unsent, unparked rows with an id above `after`, oldest first, leaving out `in_flight`
    /// (published, confirms awaited), and whether they are all that this read could see (it
    /// stopped short of its limit). Rows too large for the broker are parked on the way.
    pub(super) async fn read_pending(
        &self,
        after: i64,
        in_flight: &[i64],
    ) -> Result<(Vec<Pending>, bool), sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, event_id, event_type, payload, trace FROM conveyor.outbox
             WHERE published_at IS NULL AND parked_at IS NULL AND id > $2 AND NOT (id = ANY($3))
             ORDER BY id LIMIT $1",
        )
        .bind(self.options.batch_size)
        .bind(after)
        .bind(in_flight)
        .fetch_all(&self.pool)
        .await?;
        let all_seen = i64::try_from(rows.len()).is_ok_and(|read| read < self.options.batch_size);
        Ok((self.prepare(rows).await?, all_seen))
    }

    /// The unsent, unparked rows among `ids`, oldest first.
    pub(super) async fn read_ids(
        &self,
        ids: &[i64],
        in_flight: &[i64],
    ) -> Result<Vec<Pending>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, event_id, event_type, payload, trace FROM conveyor.outbox
             WHERE id = ANY($1) AND published_at IS NULL AND parked_at IS NULL
               AND NOT (id = ANY($2))
             ORDER BY id",
        )
        .bind(ids)
        .bind(in_flight)
        .fetch_all(&self.pool)
        .await?;
        self.prepare(rows).await
    }

    /// Turns rows into messages, parking those too large for the broker on the way.
    async fn prepare(&self, rows: Vec<PgRow>) -> Result<Vec<Pending>, sqlx::Error> {
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let payload: Vec<u8> = row.try_get("payload")?;
            if payload.len() > self.options.max_message_bytes {
                let error = format!(
                    "the event is {} bytes, more than the broker accepts ({} bytes)",
                    payload.len(),
                    self.options.max_message_bytes
                );
                self.park(&[id], &[error]).await?;
                continue;
            }
            pending.push(self.pending_from_row(&row, id, payload)?);
        }
        Ok(pending)
    }

    fn pending_from_row(
        &self,
        row: &PgRow,
        id: i64,
        payload: Vec<u8>,
    ) -> Result<Pending, sqlx::Error> {
        let trace: sqlx::types::Json<BTreeMap<String, String>> = row.try_get("trace")?;
        // The stored bytes are sent as they are; only the attributes AMQP mirrors are read.
        if let Ok(head) = EnvelopeHead::from_bytes(&payload) {
            return Ok(Pending {
                id,
                message: OutgoingMessage::stored_event(
                    &self.names,
                    &head,
                    payload,
                    &crate::trace_context::publish_span(&trace.0, &head.event_type),
                ),
                correlation_id: Some(head.correlationid),
                subject: head.subject,
            });
        }
        // Written by hand, not through `Outbox::add`: publish it as it is rather than block
        // the outbox behind it; consumers dead-letter it as malformed, where it is visible.
        let event_id: Uuid = row.try_get("event_id")?;
        let event_type: String = row.try_get("event_type")?;
        tracing::error!(%event_id, "Outbox row is not a valid envelope; publishing it as it is.");
        let message = OutgoingMessage {
            exchange: self.names.events_exchange(),
            routing_key: event_type.clone(),
            body: payload,
            properties: lapin::BasicProperties::default()
                .with_message_id(event_id.to_string().into())
                .with_type(event_type.into())
                .with_delivery_mode(2),
        };
        Ok(Pending {
            id,
            message,
            correlation_id: None,
            subject: None,
        })
    }

    /// Records what the broker said of each row: the confirmed ones leave the outbox for
    /// the log of what was sent (one statement), the refused ones keep their error and stay
    /// to be sent again. Returns the ids of the refused ones.
    pub(super) async fn settle(
        &self,
        rows: &[Pending],
        outcomes: Vec<Result<(), PublishError>>,
    ) -> Result<Vec<i64>, sqlx::Error> {
        let mut sent = Sent::default();
        let (mut refused, mut errors) = (Vec::new(), Vec::new());
        for (row, outcome) in rows.iter().zip(outcomes) {
            match outcome {
                Ok(()) => sent.add(row),
                Err(error) => {
                    refused.push(row.id);
                    errors.push(error.to_string());
                }
            }
        }
        sqlx::query(
            "WITH sent AS (
                 DELETE FROM conveyor.outbox WHERE id = ANY($1)
                 RETURNING id, event_id, event_type, created_at)
             INSERT INTO conveyor.published (event_id, event_type, correlation_id, subject, created_at)
             SELECT sent.event_id, sent.event_type, head.correlation_id, head.subject, sent.created_at
             FROM sent JOIN unnest($1::bigint[], $2::uuid[], $3::text[])
                 AS head(id, correlation_id, subject) ON head.id = sent.id",
        )
        .bind(&sent.ids)
        .bind(&sent.correlation_ids)
        .bind(&sent.subjects)
        .execute(&self.pool)
        .await?;
        let metrics = crate::metrics::metrics();
        for row in rows {
            let counter = if refused.contains(&row.id) {
                &metrics.outbox_refusals
            } else {
                &metrics.events_published
            };
            counter
                .with_label_values(&[row.message.routing_key.as_str()])
                .inc();
        }
        if !refused.is_empty() {
            tracing::warn!(
                count = refused.len(),
                error = %errors[0],
                "The broker refused outbox events for now; they stay and are sent again."
            );
            self.record_refusals(&refused, &errors, false).await?;
        }
        Ok(refused)
    }

    /// Parks rows the broker will never take, with why: the relay moves past them, and an
    /// operator sends them again (`conveyor outbox unpark`) once the cause is fixed.
    pub(super) async fn park(&self, ids: &[i64], errors: &[String]) -> Result<(), sqlx::Error> {
        self.record_refusals(ids, errors, true).await
    }

    /// Records why the broker refused these rows, and how often; parks them with `park`.
    async fn record_refusals(
        &self,
        ids: &[i64],
        errors: &[String],
        park: bool,
    ) -> Result<(), sqlx::Error> {
        let parked: Vec<(i64, Uuid, Option<String>)> = sqlx::query_as(
            "UPDATE conveyor.outbox AS row SET attempts = row.attempts + 1, last_error = refusal.error,
                 parked_at = CASE WHEN $3 THEN now() END
             FROM unnest($1::bigint[], $2::text[]) AS refusal(id, error)
             WHERE row.id = refusal.id
             RETURNING row.id, row.event_id, row.last_error",
        )
        .bind(ids)
        .bind(errors)
        .bind(park)
        .fetch_all(&self.pool)
        .await?;
        if park {
            for (id, event_id, error) in &parked {
                let error = error.as_deref().unwrap_or_default();
                tracing::error!(outbox_id = id, %event_id, %error, "The broker will never take this outbox event; it is parked with its error and the relay moves on. Fix the cause, then send it again with `conveyor outbox unpark`.");
            }
        }
        Ok(())
    }
}

/// The rows the broker confirmed, as columns for the log of what was sent.
#[derive(Default)]
struct Sent {
    ids: Vec<i64>,
    correlation_ids: Vec<Option<Uuid>>,
    subjects: Vec<Option<String>>,
}

impl Sent {
    fn add(&mut self, row: &Pending) {
        self.ids.push(row.id);
        self.correlation_ids.push(row.correlation_id);
        self.subjects.push(row.subject.clone());
    }
}
