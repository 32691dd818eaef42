//! Reconciliation of any flow: for each finished run, what the keeper says each participant
//! should hold of it against what that participant's records hold, through the queries the
//! flow declares ([`Agreement`]). Compensation is event-driven; when one of its events is
//! dead-lettered and nobody replays it, the books disagree quietly (a cancelled return whose
//! pickup still stands). This finds those, with no code of the flow's own.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::flow::{Agreement, Flow};

/// Findings a report keeps; the rest are counted.
const KEPT: usize = 10_000;
/// Runs whose records are read in one query per agreement.
const CHUNK: usize = 2_000;

/// Which finished runs to look at.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Runs finished less than this long ago are left out: their compensation may still be
    /// on its way.
    pub settled_for: Duration,
    /// Runs finished longer ago than this are left out.
    pub since: Duration,
}

/// One way a participant's records disagree with what the keeper says of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub run_id: Uuid,
    /// The keeper's word for how the run ended.
    pub status: String,
    pub finished_at: DateTime<Utc>,
    /// The agreement broken (`refund`), and the participant whose records break it.
    pub agreement: &'static str,
    pub service: &'static str,
    /// What the keeper says the participant should hold; null for nothing.
    pub expected: Option<Value>,
    /// What it holds; null for nothing.
    pub actual: Option<Value>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub flow: &'static str,
    /// Finished runs compared.
    pub checked: u64,
    /// Findings, all of them counted.
    pub found: u64,
    /// The first 10,000 of them.
    pub findings: Vec<Finding>,
}

/// Why a reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(
        "no database of {0} was given: flow reconcile reads the keeper's and every participant's"
    )]
    NoDatabase(&'static str),
    #[error("reading {service}'s records for {what} failed: {source}")]
    Read {
        service: &'static str,
        what: String,
        source: sqlx::Error,
    },
}

/// The services' databases, by name.
pub type Databases = BTreeMap<String, PgPool>;

fn pool<'a>(databases: &'a Databases, service: &'static str) -> Result<&'a PgPool, ReconcileError> {
    databases
        .get(service)
        .ok_or(ReconcileError::NoDatabase(service))
}

/// The filter on the keeper's runs that a window keeps: finished, between `$1` and `$2`
/// (the keeper's index on finished runs serves it).
const FINISHED_IN_WINDOW: &str = "NOT running AND finished_at >= $1 AND finished_at < $2";

/// A window's times on the keeper's clock, read once so every page sees the same runs.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

fn read_error(service: &'static str) -> impl FnOnce(sqlx::Error) -> ReconcileError {
    move |source| ReconcileError::Read {
        service,
        what: "its finished runs".to_owned(),
        source,
    }
}

/// `window` on the clock of `flow`'s keeper, now.
///
/// # Errors
/// [`ReconcileError`] when the keeper's database is missing or cannot be read.
pub async fn bounds(
    flow: &Flow,
    databases: &Databases,
    window: Window,
) -> Result<Bounds, ReconcileError> {
    let keeper = flow.runs.service;
    let (from, to): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT clock_timestamp() - make_interval(secs => $2),
                clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(window.settled_for.as_secs_f64())
    .bind(window.since.as_secs_f64())
    .fetch_one(pool(databases, keeper)?)
    .await
    .map_err(read_error(keeper))?;
    Ok(Bounds { from, to })
}

/// How many finished runs of `flow` the bounds hold.
///
/// # Errors
/// [`ReconcileError`] when the keeper's database is missing or cannot be read.
pub async fn count(
    flow: &Flow,
    databases: &Databases,
    bounds: Bounds,
) -> Result<u64, ReconcileError> {
    let keeper = flow.runs.service;
    let query = format!(
        "SELECT count(*) FROM ({}) AS runs WHERE {FINISHED_IN_WINDOW}",
        flow.runs.query
    );
    let counted: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .bind(bounds.from)
        .bind(bounds.to)
        .fetch_one(pool(databases, keeper)?)
        .await
        .map_err(read_error(keeper))?;
    Ok(u64::try_from(counted).unwrap_or_default())
}

#[derive(Debug, sqlx::FromRow)]
struct FinishedRun {
    id: Uuid,
    status: String,
    finished_at: DateTime<Utc>,
}

/// Compares every finished run of `flow` within `bounds` with its participants' records, a
/// chunk of runs at a time (oldest first); calls `progress` with the runs compared so far.
///
/// # Errors
/// [`ReconcileError`] when a database is missing or a query fails.
pub async fn reconcile(
    flow: &'static Flow,
    databases: &Databases,
    bounds: Bounds,
    progress: impl Fn(u64),
) -> Result<Report, ReconcileError> {
    let keeper = flow.runs.service;
    let mut report = Report {
        flow: flow.name,
        ..Report::default()
    };
    let query = format!(
        "SELECT id, status, finished_at FROM ({}) AS runs WHERE {FINISHED_IN_WINDOW}
           AND (finished_at, id) > ($3, $4) ORDER BY finished_at, id LIMIT $5",
        flow.runs.query
    );
    let mut after = (DateTime::<Utc>::UNIX_EPOCH, Uuid::nil());
    loop {
        let runs: Vec<FinishedRun> = sqlx::query_as(sqlx::AssertSqlSafe(query.clone()))
            .bind(bounds.from)
            .bind(bounds.to)
            .bind(after.0)
            .bind(after.1)
            .bind(i64::try_from(CHUNK).unwrap_or(i64::MAX))
            .fetch_all(pool(databases, keeper)?)
            .await
            .map_err(read_error(keeper))?;
        let Some(last) = runs.last() else {
            return Ok(report);
        };
        after = (last.finished_at, last.id);
        for agreement in flow.agreements {
            compare(flow, agreement, databases, &runs, &mut report).await?;
        }
        report.checked += runs.len() as u64;
        progress(report.checked);
    }
}

/// One agreement over one chunk of runs.
async fn compare(
    flow: &Flow,
    agreement: &'static Agreement,
    databases: &Databases,
    runs: &[FinishedRun],
    report: &mut Report,
) -> Result<(), ReconcileError> {
    let ids: Vec<Uuid> = runs.iter().map(|run| run.id).collect();
    let keeper = flow.runs.service;
    let expected = values(databases, keeper, agreement.expects, &ids, agreement).await?;
    let actual = values(
        databases,
        agreement.service,
        agreement.holds,
        &ids,
        agreement,
    )
    .await?;
    for run in runs {
        let expected = expected.get(&run.id).cloned().flatten();
        let actual = actual.get(&run.id).cloned().flatten();
        if expected == actual {
            continue;
        }
        report.found += 1;
        if report.findings.len() < KEPT {
            report.findings.push(Finding {
                run_id: run.id,
                status: run.status.clone(),
                finished_at: run.finished_at,
                agreement: agreement.name,
                service: agreement.service,
                expected,
                actual,
            });
        }
    }
    Ok(())
}

/// `query`'s `id` and value column (`expected` or `actual`: the second) for `ids`, in
/// `service`'s database.
async fn values(
    databases: &Databases,
    service: &'static str,
    query: &str,
    ids: &[Uuid],
    agreement: &Agreement,
) -> Result<HashMap<Uuid, Option<Value>>, ReconcileError> {
    let wrapped = format!("SELECT * FROM ({query}) AS agreed WHERE id = ANY($1)");
    let rows: Vec<(Uuid, Option<Value>)> = sqlx::query_as(sqlx::AssertSqlSafe(wrapped))
        .bind(ids)
        .fetch_all(pool(databases, service)?)
        .await
        .map_err(|source| ReconcileError::Read {
            service,
            what: format!("the {} agreement", agreement.name),
            source,
        })?;
    Ok(rows.into_iter().collect())
}
