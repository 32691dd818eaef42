//! Where a run of a flow is, and why it is stuck: its timeline across every service, read
//! from the services' own records (the events each relay sent or still holds, each
//! consumer's inbox, the dead letters with the run's correlation id, queue depths and
//! `/readyz`), read against the map of who handles what. No tracing backend is needed, and
//! nothing here knows one flow from another: each run is found through the query its
//! flow's keeper declares (`crate::Runs`), its deadline through the flow's timer event.
//!
//! - `evidence`: gathering those records for a set of runs.
//! - `diagnose`: the timeline and the diagnosis, from the evidence alone.

mod diagnose;
mod evidence;
#[cfg(test)]
mod fixture;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Flow;
use chrono::{DateTime, Utc};
use conveyor::{AmqpConfig, Names};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::map::FlowMap;

/// Where the records are.
pub struct Sources {
    /// Each service's database.
    pub databases: BTreeMap<&'static str, PgPool>,
    /// The broker, for dead letters and queue depths; `None` leaves them out.
    pub amqp: Option<AmqpConfig>,
    pub names: Names,
    /// Each service's base URL, for its `/readyz`.
    pub urls: BTreeMap<&'static str, String>,
}

/// A run as its keeper's declared query answers it, with its deadline as it stands.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub id: Uuid,
    /// The keeper's own word (`pending`, `confirmed`, …).
    pub status: String,
    pub running: bool,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the flow's timer falls due, moved on by the time nobody watched; `None` when
    /// none waits in the schedule (the run ended, or its timer is already on its way).
    pub deadline_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One run's timeline and, when it has not finished, what it waits for and why.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The flow's name.
    pub flow: &'static str,
    pub run: RunRow,
    pub events: Vec<TracedEvent>,
    pub waiting: Option<Waiting>,
    /// Most likely reason first.
    pub diagnosis: Vec<Finding>,
    /// What could not be read, so what the diagnosis could not see.
    pub notes: Vec<String>,
}

/// An event of the run: who emitted it, whether it left its outbox, and what each
/// service that handles it made of it.
#[derive(Debug, Clone, Serialize)]
pub struct TracedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub emitted_by: &'static str,
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
    pub service: &'static str,
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

impl Outcome {
    /// The outcome in words, as `conveyor flow trace` and the console print it.
    pub fn describe(&self) -> String {
        match self {
            Self::Handled { at, attempt } => format!(
                "handled {}{}",
                at.format("%H:%M:%S%.3f"),
                attempt
                    .filter(|n| *n > 1)
                    .map_or_else(String::new, |n| format!(" on attempt {n}"))
            ),
            Self::DeadLettered {
                kind,
                error,
                attempts,
                at,
            } => format!(
                "dead-lettered{} as {}{}: {}",
                at.map_or_else(String::new, |at| format!(" {}", at.format("%H:%M:%S"))),
                kind.as_deref().unwrap_or("(by the broker)"),
                attempts.map_or_else(String::new, |n| format!(" after {n} attempts")),
                error.as_deref().unwrap_or("-")
            ),
            Self::Pending => "not handled yet".to_owned(),
        }
    }
}

impl TracedEvent {
    /// What is left to say of its sending: nothing once published, else parked or not yet
    /// published (with a leading space).
    pub fn publication(&self) -> String {
        match (self.published_at, self.parked_at) {
            (Some(_), _) => String::new(),
            (None, Some(_)) => format!(" [parked after {} refusals]", self.refusals),
            (None, None) => " [not yet published]".to_owned(),
        }
    }
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

/// The step an unfinished run waits on.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub service: &'static str,
    pub event_type: String,
    pub event_id: Uuid,
    pub action: WaitAction,
    pub since: DateTime<Utc>,
}

/// One thing found that explains (or rules out an explanation of) where the run is.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `dead-letter`, `retry-pending`, `not-ready`, `no-consumer`, `backlog`, `relay`,
    /// `deadline`, `no-events`, `no-reply`, `compensation` or `unknown`.
    pub rule: &'static str,
    pub service: Option<&'static str>,
    pub message: String,
}

/// A flow's runs still going after longer than asked, each with its diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct StuckReport {
    pub flow: &'static str,
    pub older_than_seconds: u64,
    /// Every such run, counted.
    pub running: i64,
    /// The oldest of them, up to the limit.
    pub runs: Vec<Trace>,
    /// The services whose outbox holds parked events (the broker will never take them as
    /// they are), with how many and since when; a run waiting on one is among `runs`.
    pub parked: Vec<ServiceParked>,
}

/// One service's parked outbox rows.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceParked {
    pub service: &'static str,
    #[serde(flatten)]
    pub summary: conveyor::parked::ParkedSummary,
}

/// The services with parked outbox rows; a database that cannot be read is left out (the
/// runs' diagnosis notes it).
async fn parked(sources: &Sources) -> Vec<ServiceParked> {
    let mut found = Vec::new();
    for (service, pool) in &sources.databases {
        if let Ok(summary) = conveyor::parked::summary(pool).await
            && summary.count > 0
        {
            found.push(ServiceParked { service, summary });
        }
    }
    found
}

/// `flow`'s runs that `filter` keeps (over the columns of [`RunRow`], its parameters from
/// `$2`), each with its deadline as it stands: the flow's timer (`$1`) in the keeper's
/// schedule, moved on by the time nobody watched.
fn select_runs(flow: &Flow, filter: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT run.id, run.status, run.running, run.reason, run.detail, run.created_at,
             (SELECT CASE WHEN timer.counts_watched_time_only
                          THEN timer.due_at + clock.unwatched ELSE timer.due_at END
              FROM conveyor.scheduled AS timer, conveyor.schedule_clock AS clock
              WHERE timer.event_type = $1 AND timer.subject = run.id::text AND clock.id = 1
              ORDER BY timer.due_at LIMIT 1) AS deadline_at,
             run.finished_at
         FROM ({}) AS run {filter}",
        flow.runs.query
    ))
}

/// The flows among `flows` that have a run `id`: one, usually; none for an unknown id.
///
/// # Errors
/// When a keeper's database cannot be read, or its declared query fails.
pub async fn flows_of(
    sources: &Sources,
    flows: &[&'static Flow],
    id: Uuid,
) -> Result<Vec<&'static Flow>, TraceError> {
    let mut found = Vec::new();
    for flow in flows {
        if run(sources, flow, id).await?.is_some() {
            found.push(*flow);
        }
    }
    Ok(found)
}

async fn run(sources: &Sources, flow: &Flow, id: Uuid) -> Result<Option<RunRow>, TraceError> {
    let keeper = evidence::database_of(sources, flow.runs.service)?;
    let query = select_runs(flow, "WHERE run.id = $2");
    sqlx::query_as(query)
        .bind(flow.deadline.timer)
        .bind(id)
        .fetch_optional(keeper)
        .await
        .map_err(|error| query_failed(flow, error))
}

/// Why a run could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{service}'s database is not configured ({}_DATABASE_URL)", service.to_uppercase())]
    NoDatabase { service: &'static str },
    /// A keeper's declared query that fails is a defect of the declaration: say whose.
    #[error(
        "the runs of flow {flow} could not be read from {service}'s database with the query its declaration gives ({source}): check {service}'s migrations and the flow's `runs`"
    )]
    Runs {
        flow: &'static str,
        service: &'static str,
        source: sqlx::Error,
    },
}

fn query_failed(flow: &Flow, error: sqlx::Error) -> TraceError {
    TraceError::Runs {
        flow: flow.name,
        service: flow.runs.service,
        source: error,
    }
}

/// The timeline and diagnosis of `flow`'s run `id`; `None` when its keeper has no such run.
///
/// # Errors
/// When the keeper's database cannot be read (the other sources become notes).
pub async fn trace(
    sources: &Sources,
    map: &FlowMap,
    flow: &'static Flow,
    id: Uuid,
) -> Result<Option<Trace>, TraceError> {
    let Some(found) = run(sources, flow, id).await? else {
        return Ok(None);
    };
    let evidence = evidence::gather(sources, map, flow, &[found.id]).await;
    Ok(Some(diagnose::diagnose(flow, &found, &evidence, map)))
}

/// Every run of `flow` going for longer than `older_than`, the oldest `limit` of them
/// diagnosed.
///
/// # Errors
/// When the keeper's database cannot be read.
pub async fn stuck(
    sources: &Sources,
    map: &FlowMap,
    flow: &'static Flow,
    older_than: Duration,
    limit: i64,
) -> Result<StuckReport, TraceError> {
    let keeper = evidence::database_of(sources, flow.runs.service)?;
    let running: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM ({}) AS run
         WHERE run.running AND run.created_at < clock_timestamp() - $1",
        flow.runs.query
    )))
    .bind(older_than)
    .fetch_one(keeper)
    .await
    .map_err(|error| query_failed(flow, error))?;
    let rows: Vec<RunRow> = sqlx::query_as(select_runs(
        flow,
        "WHERE run.running AND run.created_at < clock_timestamp() - $2
         ORDER BY run.created_at LIMIT $3",
    ))
    .bind(flow.deadline.timer)
    .bind(older_than)
    .bind(limit)
    .fetch_all(keeper)
    .await
    .map_err(|error| query_failed(flow, error))?;
    let ids: Vec<Uuid> = rows.iter().map(|run| run.id).collect();
    let evidence = evidence::gather(sources, map, flow, &ids).await;
    Ok(StuckReport {
        flow: flow.name,
        older_than_seconds: older_than.as_secs(),
        running,
        runs: rows
            .iter()
            .map(|run| diagnose::diagnose(flow, run, &evidence, map))
            .collect(),
        parked: parked(sources).await,
    })
}
