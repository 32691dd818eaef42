//! What the overview reads from the services' own databases, beside the broker's counts:
//! each outbox's backlog, its oldest unsent event and its parked rows, each flow's runs in
//! flight and stuck, and the events published per type in the last minute. Each database is
//! asked with a short timeout, so one that is down costs the page a line, not its answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use crate::AppState;

/// How long one database may take to answer.
const ASK_WITHIN: Duration = Duration::from_secs(2);
/// A run going for longer than this is stuck, as on the Flows page.
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(30);

/// One outbox.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Outbox {
    /// Events committed and not yet published (parked ones not counted).
    pub(crate) backlog: i64,
    /// Seconds the oldest of those has waited.
    pub(crate) oldest_seconds: f64,
    /// Events the broker will never take as they are.
    pub(crate) parked: i64,
}

/// One flow's runs.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FlowRuns {
    pub(crate) in_flight: i64,
    pub(crate) stuck: i64,
}

/// Everything the overview reads from the databases.
#[derive(Debug, Clone, Default)]
pub(crate) struct DatabaseFigures {
    pub(crate) outboxes: BTreeMap<String, Outbox>,
    pub(crate) flows: BTreeMap<&'static str, FlowRuns>,
    /// Events published in the last minute, by type, across the services.
    pub(crate) per_minute: BTreeMap<String, i64>,
    /// What could not be read, and why.
    pub(crate) problems: Vec<String>,
}

/// The figures of every service's database, every database asked at once.
pub(crate) async fn read(state: &AppState) -> DatabaseFigures {
    let mut figures = DatabaseFigures::default();
    let services = system::ServiceName::all().map(|service| async move {
        let name = service.as_str();
        let pool = state.database(name)?;
        let (outbox, published) =
            tokio::join!(within(outbox(&pool)), within(published_last_minute(&pool)));
        Ok::<_, String>((name, outbox, published))
    });
    for read in futures_util::future::join_all(services).await {
        let (name, outbox, published) = match read {
            Ok(read) => read,
            Err(problem) => {
                figures.problems.push(problem);
                continue;
            }
        };
        match outbox {
            Ok(outbox) => {
                figures.outboxes.insert(name.to_owned(), outbox);
            }
            Err(error) => figures.problems.push(format!("{name}'s database: {error}")),
        }
        match published {
            Ok(rows) => {
                for (event_type, count) in rows {
                    *figures.per_minute.entry(event_type).or_default() += count;
                }
            }
            Err(error) => figures.problems.push(format!("{name}'s database: {error}")),
        }
    }
    let flows = system::all_flows().iter().filter_map(|flow| {
        let pool = state.database(flow.runs.service).ok()?;
        Some(async move { (flow.name, within(flow_runs(&pool, flow)).await) })
    });
    for (flow, runs) in futures_util::future::join_all(flows).await {
        match runs {
            Ok(runs) => {
                figures.flows.insert(flow, runs);
            }
            Err(error) => figures
                .problems
                .push(format!("the {flow} flow's runs: {error}")),
        }
    }
    figures
}

async fn within<T>(asking: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    match tokio::time::timeout(ASK_WITHIN, asking).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} s", ASK_WITHIN.as_secs())),
    }
}

async fn outbox(pool: &PgPool) -> Result<Outbox, sqlx::Error> {
    let (backlog, oldest_seconds, parked): (i64, f64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                COALESCE(EXTRACT(EPOCH FROM clock_timestamp()
                    - min(created_at) FILTER (WHERE parked_at IS NULL)), 0)::float8,
                count(*) FILTER (WHERE parked_at IS NOT NULL)
         FROM conveyor.outbox WHERE published_at IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(Outbox {
        backlog,
        oldest_seconds,
        parked,
    })
}

async fn published_last_minute(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT event_type, count(*) FROM conveyor.published
         WHERE published_at > clock_timestamp() - interval '1 minute' GROUP BY event_type",
    )
    .fetch_all(pool)
    .await
}

async fn flow_runs(pool: &PgPool, flow: &flows::Flow) -> Result<FlowRuns, sqlx::Error> {
    let query = format!(
        "SELECT count(*), count(*) FILTER (WHERE created_at < clock_timestamp() - $1)
         FROM ({}) AS runs WHERE running",
        flow.runs.query
    );
    let (in_flight, stuck): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(query))
        .bind(STUCK_AFTER)
        .fetch_one(pool)
        .await?;
    Ok(FlowRuns { in_flight, stuck })
}
