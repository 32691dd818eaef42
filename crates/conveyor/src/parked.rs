//! The operator's side of parked outbox rows: events the broker will never take as they
//! are (see `relay::rows`), kept with their error until someone fixes the cause and sends
//! them again. The relay never parks a row for a nack or a lost connection.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::OUTBOX_CHANNEL;

/// How many rows are parked in one outbox, and since when.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ParkedSummary {
    /// Parked rows in the outbox.
    pub count: i64,
    /// When the oldest parked row was committed; `None` when none is parked.
    pub oldest_created_at: Option<DateTime<Utc>>,
}

/// A parked row, as an operator sees it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ParkedRow {
    /// The event's envelope id.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// When the row was committed.
    pub created_at: DateTime<Utc>,
    /// When the relay parked it.
    pub parked_at: DateTime<Utc>,
    /// Broker refusals since it was written or last unparked.
    pub attempts: i32,
    /// Why the broker last refused it.
    pub last_error: Option<String>,
}

/// Which parked rows to send again.
#[derive(Debug, Clone)]
pub enum Unpark {
    /// These events (by their envelope id).
    Events(Vec<Uuid>),
    /// Every parked row.
    All,
}

/// Counts the parked rows of the outbox in `pool`.
///
/// # Errors
/// The database's error.
pub async fn summary(pool: &PgPool) -> Result<ParkedSummary, sqlx::Error> {
    let (count, oldest_created_at) = sqlx::query_as(
        "SELECT count(*), min(created_at) FROM conveyor.outbox
         WHERE parked_at IS NOT NULL AND published_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(ParkedSummary {
        count,
        oldest_created_at,
    })
}

/// The oldest `limit` parked rows, oldest first.
///
/// # Errors
/// The database's error.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<ParkedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_id, event_type, created_at, parked_at, attempts, last_error
         FROM conveyor.outbox WHERE parked_at IS NOT NULL AND published_at IS NULL
         ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Sends parked rows again: they are unparked with their refusal count reset, and the
/// relay is woken in the same transaction. Returns the ids of the events unparked.
///
/// # Errors
/// The database's error.
pub async fn unpark(pool: &PgPool, which: &Unpark) -> Result<Vec<Uuid>, sqlx::Error> {
    let events: Option<&[Uuid]> = match which {
        Unpark::Events(ids) => Some(ids),
        Unpark::All => None,
    };
    let mut tx = pool.begin().await?;
    let unparked: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE conveyor.outbox SET parked_at = NULL, attempts = 0
         WHERE parked_at IS NOT NULL AND published_at IS NULL
           AND ($1::uuid[] IS NULL OR event_id = ANY($1))
         RETURNING event_id",
    )
    .bind(events)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(OUTBOX_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(unparked)
}
