//! Where an order is, and why it is stuck: its timeline across every service, read from the
//! services' own records (the events each relay sent or still holds, each consumer's inbox,
//! the dead letters with the order's correlation id, queue depths and `/readyz`), read
//! against the saga's map. No tracing backend is needed.
//!
//! - `evidence`: gathering those records for a set of orders.
//! - `diagnose`: the timeline and the diagnosis, from the evidence alone.

mod diagnose;
mod evidence;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::{AmqpConfig, Names};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::roster::ServiceName;
use crate::saga_map::SagaMap;

/// Where the records are.
pub struct Sources {
    /// Each service's database.
    pub databases: BTreeMap<ServiceName, PgPool>,
    /// The broker, for dead letters and queue depths; `None` leaves them out.
    pub amqp: Option<AmqpConfig>,
    pub names: Names,
    /// Each service's base URL, for its `/readyz`.
    pub urls: BTreeMap<ServiceName, String>,
}

/// An order as orders holds it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub status: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One order's timeline and, when it has not finished, what it waits for and why.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub order: OrderRow,
    pub events: Vec<TracedEvent>,
    pub waiting: Option<Waiting>,
    /// Most likely reason first.
    pub diagnosis: Vec<Finding>,
    /// What could not be read, so what the diagnosis could not see.
    pub notes: Vec<String>,
}

/// An event of the order: who emitted it, whether it left its outbox, and what each
/// service that handles it made of it.
#[derive(Debug, Clone, Serialize)]
pub struct TracedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub emitted_by: ServiceName,
    pub created_at: DateTime<Utc>,
    /// When the broker confirmed it; `None` while it is in the emitter's outbox.
    pub published_at: Option<DateTime<Utc>>,
    /// Times the broker refused it, and the last refusal.
    pub refusals: i32,
    pub last_error: Option<String>,
    /// Set when the relay gave up on it after its refusals.
    pub parked_at: Option<DateTime<Utc>>,
    pub handlers: Vec<Handling>,
}

/// What one handler made of an event.
#[derive(Debug, Clone, Serialize)]
pub struct Handling {
    pub service: ServiceName,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Handled {
        at: DateTime<Utc>,
        /// Which delivery was handled: 1 the first, more after retries; none for events
        /// handled before the inbox recorded it.
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
    },
    DeadLettered {
        kind: Option<String>,
        error: Option<String>,
        attempts: Option<u32>,
        at: Option<DateTime<Utc>>,
    },
    /// Neither handled nor dead-lettered yet.
    Pending,
}

/// What the step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitAction {
    /// The emitter's relay to send the event.
    Publish,
    /// The service to handle the event.
    Handle,
}

impl std::fmt::Display for WaitAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Publish => "publish",
            Self::Handle => "handle",
        })
    }
}

/// The step an unfinished order waits on.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub service: ServiceName,
    pub event_type: String,
    pub event_id: Uuid,
    pub action: WaitAction,
    pub since: DateTime<Utc>,
}

/// One thing found that explains (or rules out an explanation of) where the order is.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `dead-letter`, `retry-pending`, `not-ready`, `no-consumer`, `backlog`, `relay`,
    /// `deadline`, `no-events`, `no-reply`, `compensation` or `unknown`.
    pub rule: &'static str,
    pub service: Option<ServiceName>,
    pub message: String,
}

/// Pending orders older than asked, each with its diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct StuckReport {
    pub older_than_seconds: u64,
    /// Every such order, counted.
    pub pending: i64,
    /// The oldest of them, up to the limit.
    pub orders: Vec<Trace>,
    /// The services whose outbox holds parked events (the broker will never take them as
    /// they are), with how many and since when; an order waiting on one is among `orders`.
    pub parked: Vec<ServiceParked>,
}

/// One service's parked outbox rows.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceParked {
    pub service: ServiceName,
    #[serde(flatten)]
    pub summary: conveyor::parked::ParkedSummary,
}

/// The services with parked outbox rows; a database that cannot be read is left out (the
/// orders' diagnosis notes it).
async fn parked(sources: &Sources) -> Vec<ServiceParked> {
    let mut found = Vec::new();
    for (service, pool) in &sources.databases {
        if let Ok(summary) = conveyor::parked::summary(pool).await
            && summary.count > 0
        {
            found.push(ServiceParked {
                service: *service,
                summary,
            });
        }
    }
    found
}

/// A query of [`OrderRow`]s: orders' rows that match `$filter`, each with its deadline as
/// it stands: the scheduled `order.deadline-passed` (moved on by the time nobody watched),
/// or `deadline_at` for an order that has none (placed by a previous release, not adopted
/// yet, or ended).
macro_rules! select_orders {
    ($filter:literal) => {
        concat!(
            "SELECT id, status, reason, detail, created_at, coalesce(
                 (SELECT CASE WHEN timer.counts_watched_time_only
                              THEN timer.due_at + clock.unwatched ELSE timer.due_at END
                  FROM conveyor.scheduled AS timer, conveyor.schedule_clock AS clock
                  WHERE timer.event_type = 'order.deadline-passed'
                      AND timer.subject = orders.id::text AND clock.id = 1
                  ORDER BY timer.due_at LIMIT 1),
                 deadline_at) AS deadline_at, finished_at
             FROM orders ",
            $filter
        )
    };
}

/// The timeline and diagnosis of `order_id`; `None` when orders has no such order.
///
/// # Errors
/// When orders' database cannot be read (the other sources become notes).
pub async fn trace(
    sources: &Sources,
    map: &SagaMap,
    order_id: Uuid,
) -> anyhow::Result<Option<Trace>> {
    let orders = evidence::orders_database(sources)?;
    let found: Option<OrderRow> = sqlx::query_as(select_orders!("WHERE id = $1"))
        .bind(order_id)
        .fetch_optional(orders)
        .await?;
    let Some(order) = found else {
        return Ok(None);
    };
    let evidence = evidence::gather(sources, map, &[order.id]).await;
    Ok(Some(diagnose::diagnose(&order, &evidence, map)))
}

/// Every order pending for longer than `older_than`, the oldest `limit` of them diagnosed.
///
/// # Errors
/// When orders' database cannot be read.
pub async fn stuck(
    sources: &Sources,
    map: &SagaMap,
    older_than: Duration,
    limit: i64,
) -> anyhow::Result<StuckReport> {
    let orders = evidence::orders_database(sources)?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE status = 'pending' AND created_at < clock_timestamp() - $1",
    )
    .bind(older_than)
    .fetch_one(orders)
    .await?;
    let rows: Vec<OrderRow> = sqlx::query_as(select_orders!(
        "WHERE status = 'pending' AND created_at < clock_timestamp() - $1
             ORDER BY created_at LIMIT $2"
    ))
    .bind(older_than)
    .bind(limit)
    .fetch_all(orders)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|order| order.id).collect();
    let evidence = evidence::gather(sources, map, &ids).await;
    Ok(StuckReport {
        older_than_seconds: older_than.as_secs(),
        pending,
        orders: rows
            .iter()
            .map(|order| diagnose::diagnose(order, &evidence, map))
            .collect(),
        parked: parked(sources).await,
    })
}
