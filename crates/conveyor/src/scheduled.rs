//! The operator's side of scheduled events (`Outbox::add_at`, `Outbox::add_after`): what
//! waits in a service's schedule, and what is due but not yet on its way.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// How many events one schedule holds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ScheduledSummary {
    /// Events scheduled and not yet moved to the outbox.
    pub count: i64,
    /// Of those, the ones whose time has come: the relay moves them within a moment, so
    /// more than a few means no relay is sending (the service is down, or the broker away).
    pub due: i64,
    /// When the earliest is due; `None` when nothing is scheduled.
    pub next_due_at: Option<DateTime<Utc>>,
}

/// A scheduled event, as an operator sees it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct ScheduledRow {
    /// The event's envelope id.
    pub event_id: Uuid,
    /// The event type.
    pub event_type: String,
    /// The envelope's subject, the key it is cancelled by.
    pub subject: Option<String>,
    /// When it is due (the database's clock).
    pub deliver_at: DateTime<Utc>,
    /// Whether its due time moves on by outages (a deadline) or stays (a calendar time).
    pub counts_watched_time_only: bool,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
}

/// Each scheduled event with when it is due on the wall clock: a deadline's `due_at` is on
/// the watched clock, behind by the time nobody watched.
macro_rules! deliver_at {
    () => {
        "CASE WHEN counts_watched_time_only
              THEN due_at + make_interval(secs => extract(epoch FROM clock.unwatched)::float8) ELSE due_at END"
    };
}

/// Counts the scheduled events in `pool`'s schedule.
///
/// # Errors
/// The database's error.
pub async fn summary(pool: &PgPool) -> Result<ScheduledSummary, sqlx::Error> {
    let (count, due, next_due_at) = sqlx::query_as(concat!(
        "SELECT count(*), count(*) FILTER (WHERE ",
        deliver_at!(),
        " <= now()), min(",
        deliver_at!(),
        ") FROM conveyor.scheduled, conveyor.schedule_clock AS clock WHERE clock.id = 1"
    ))
    .fetch_one(pool)
    .await?;
    Ok(ScheduledSummary {
        count,
        due,
        next_due_at,
    })
}

/// How many events are due and not yet moved to the outbox, and how long the earliest of
/// them has been due, in seconds (0 when none is): found by the due-time indexes, so it
/// costs little however much is scheduled for later.
///
/// # Errors
/// The database's error.
pub async fn overdue(pool: &PgPool) -> Result<(i64, f64), sqlx::Error> {
    let (count, longest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(deliver_at))::float8 FROM (
             SELECT due_at AS deliver_at FROM conveyor.scheduled
             WHERE NOT counts_watched_time_only AND due_at <= now()
             UNION ALL
             SELECT due_at + make_interval(secs => extract(epoch FROM clock.unwatched)::float8)
             FROM conveyor.scheduled, conveyor.schedule_clock AS clock
             WHERE clock.id = 1 AND counts_watched_time_only
               AND due_at <= now() - make_interval(secs => (
                   SELECT extract(epoch FROM unwatched)::float8 FROM conveyor.schedule_clock WHERE id = 1))
         ) AS due",
    )
    .fetch_one(pool)
    .await?;
    Ok((count, longest.unwrap_or(0.0)))
}

/// The `limit` scheduled events due first (only those already due with `due_only`).
///
/// # Errors
/// The database's error.
pub async fn list(
    pool: &PgPool,
    limit: i64,
    due_only: bool,
) -> Result<Vec<ScheduledRow>, sqlx::Error> {
    // The first `limit` of each kind by its own index, then merged.
    macro_rules! first_of_kind {
        ($deadline:literal) => {
            concat!(
                "(SELECT event_id, event_type, subject, ",
                deliver_at!(),
                " AS deliver_at, counts_watched_time_only, created_at
                  FROM conveyor.scheduled, conveyor.schedule_clock AS clock
                  WHERE clock.id = 1 AND counts_watched_time_only = ",
                $deadline,
                " ORDER BY due_at LIMIT $1)"
            )
        };
    }
    sqlx::query_as(concat!(
        "SELECT * FROM (",
        first_of_kind!("false"),
        " UNION ALL ",
        first_of_kind!("true"),
        ") AS next WHERE NOT $2 OR deliver_at <= now() ORDER BY deliver_at LIMIT $1"
    ))
    .bind(limit)
    .bind(due_only)
    .fetch_all(pool)
    .await
}
