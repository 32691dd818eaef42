//! Scheduled delivery: an event written now, in the caller's transaction, and published when
//! it is due. The schedule commits or rolls back with the change that made it, which no
//! broker-side scheduler can offer; cancelling is a delete in the same kind of transaction.
//!
//! Due times are the database's clock, never a process's. The leading relay moves due rows
//! into the outbox, from where they are sent as any row is (confirms, parking, leader
//! election); see `relay::schedule`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Outbox, OutboxError};
use crate::envelope::Envelope;
use crate::trace_context;

/// When a scheduled event is due.
enum Due {
    /// At this time, whatever happened meanwhile.
    At(DateTime<Utc>),
    /// After this much time in which the service could have sent it.
    After(Duration),
}

impl Outbox {
    /// Adds `envelope` within `tx`, to be published at `deliver_at` (compared with the
    /// database's clock) if `tx` commits. A time already past is sent at once.
    ///
    /// A calendar time: after an outage (the broker away, or every relay down) an event
    /// whose time passed meanwhile is sent as soon as the relay is back. For a timeout that
    /// should count only time in which the flow could move, use [`Outbox::add_after`].
    ///
    /// # Errors
    /// As [`Outbox::add`].
    pub async fn add_at(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
        deliver_at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        self.schedule(tx, envelope, Due::At(deliver_at)).await
    }

    /// Adds `envelope` within `tx`, to be published `delay` after it is written (the
    /// database's clock) if `tx` commits: a deadline.
    ///
    /// Only watched time counts: when no relay of the service ran with the broker reachable
    /// for a while, the event's due time moves on by that gap, so after an outage the
    /// deadlines it overran do not all fire at once, and a flow that would have finished in
    /// time is not failed by the outage. (A deadline written during the outage moves on by
    /// all of it, a little more than it went unwatched.)
    ///
    /// # Errors
    /// As [`Outbox::add`].
    pub async fn add_after(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), OutboxError> {
        self.schedule(tx, envelope, Due::After(delay)).await
    }

    /// Cancels, within `tx`, the scheduled events of `event_type` whose subject is
    /// `subject` and that the relay has not taken yet; answers how many it cancelled.
    ///
    /// Zero means there was none, or it is already on its way (due, and moved to be sent):
    /// the handler that receives it must still check that it applies.
    ///
    /// # Errors
    /// [`OutboxError::Cancel`] with the database's error; roll `tx` back.
    pub async fn cancel_scheduled(
        &self,
        tx: &mut PgConnection,
        event_type: &str,
        subject: &str,
    ) -> Result<u64, OutboxError> {
        let cancelled =
            sqlx::query("DELETE FROM conveyor.scheduled WHERE event_type = $1 AND subject = $2")
                .bind(event_type)
                .bind(subject)
                .execute(tx)
                .await
                .map_err(|source| OutboxError::Cancel {
                    event_type: event_type.to_owned(),
                    subject: subject.to_owned(),
                    source,
                })?;
        Ok(cancelled.rows_affected())
    }

    async fn schedule(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
        due: Due,
    ) -> Result<(), OutboxError> {
        self.check(std::slice::from_ref(envelope))?;
        let trace = serde_json::to_value(trace_context::capture_current()).unwrap_or_default();
        let (at, delay_seconds) = match due {
            Due::At(at) => (Some(at), None),
            Due::After(delay) => (None, Some(delay.as_secs_f64())),
        };
        sqlx::query(
            "INSERT INTO conveyor.scheduled
                 (event_id, event_type, subject, payload, trace, due_at, counts_watched_time_only)
             VALUES ($1, $2, $3, $4, $5,
                     coalesce($6, clock_timestamp() + make_interval(secs => $7 - coalesce(
                         (SELECT extract(epoch FROM unwatched)::float8 FROM conveyor.schedule_clock WHERE id = 1),
                         0))),
                     $7 IS NOT NULL)",
        )
        .bind(envelope.id)
        .bind(&envelope.event_type)
        .bind(&envelope.subject)
        .bind(envelope.to_bytes())
        .bind(&trace)
        .bind(at)
        .bind(delay_seconds)
        .execute(tx)
        .await
        .map_err(|source| OutboxError::Database {
            event_id: envelope.id,
            event_type: envelope.event_type.clone(),
            source,
        })?;
        Ok(())
    }
}
