//! Metrics per flow: the same series for every flow, labelled with its name, so one
//! dashboard follows every flow and a new flow needs no metric of its own.
//!
//! - `conveyor_flow_runs_started_total{flow}`
//! - `conveyor_flow_runs_ended_total{flow,outcome,reason}`: `outcome` is `success` or
//!   `failure`; `reason` the keeper's word for a failure (`payment-declined`), empty on
//!   success.
//! - `conveyor_flow_run_duration_seconds{flow,outcome}`: started to ended.
//! - `conveyor_flow_runs_in_flight{flow}`: runs the keeper's declared query says are running,
//!   counted by each of its instances ([`InFlight`]); every instance reports the same count,
//!   so take the `max` across instances, not the sum.
//! - `conveyor_flow_oldest_run_age_seconds{flow}`: how long the oldest of those has been
//!   going (0 when none is); a run older than the flow's deadline is stuck (`alerts.yml`).
//!
//! The keeper counts a run once the transaction that starts or ends it has committed.

use std::sync::LazyLock;
use std::time::Duration;

use conveyor::Shutdown;
use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec};
use sqlx::PgPool;

use crate::flow::{Flow, Outcome};

/// Started to ended: 50 ms to an hour (a return waits for a carrier).
const DURATION: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// How often [`InFlight`] counts.
const COUNT_EVERY: Duration = Duration::from_secs(5);

struct FlowMetrics {
    started: IntCounterVec,
    ended: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    oldest: GaugeVec,
}

static METRICS: LazyLock<FlowMetrics> = LazyLock::new(|| {
    let registry = conveyor::metrics::metrics();
    FlowMetrics {
        started: registry.new_counter(
            "conveyor_flow_runs_started_total",
            "Runs of a flow started.",
            &["flow"],
        ),
        ended: registry.new_counter(
            "conveyor_flow_runs_ended_total",
            "Runs of a flow ended, by outcome and reason.",
            &["flow", "outcome", "reason"],
        ),
        duration: registry.new_histogram(
            "conveyor_flow_run_duration_seconds",
            "Time from a run started to ended.",
            DURATION,
            &["flow", "outcome"],
        ),
        in_flight: registry.new_int_gauge(
            "conveyor_flow_runs_in_flight",
            "Runs of a flow still going, as its keeper counted them last.",
            &["flow"],
        ),
        oldest: registry.new_gauge(
            "conveyor_flow_oldest_run_age_seconds",
            "How long the oldest run of a flow still going has been going; 0 when none is.",
            &["flow"],
        ),
    }
});

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

/// Counts a run of `flow` started; call once the transaction that started it committed.
pub fn run_started(flow: &Flow) {
    METRICS.started.with_label_values(&[flow.name]).inc();
}

/// Counts a run of `flow` ended after `seconds`; call once the transaction that ended it
/// committed.
pub fn run_ended(flow: &Flow, outcome: Outcome, reason: &str, seconds: f64) {
    let outcome = outcome_label(outcome);
    METRICS
        .ended
        .with_label_values(&[flow.name, outcome, reason])
        .inc();
    METRICS
        .duration
        .with_label_values(&[flow.name, outcome])
        .observe(seconds);
}

/// Runs of `flow` still going, through the query its keeper declares: `pool` is the
/// keeper's database.
///
/// # Errors
/// The database's error.
pub async fn count_in_flight(pool: &PgPool, flow: &Flow) -> Result<i64, sqlx::Error> {
    in_flight(pool, flow).await.map(|(count, _)| count)
}

/// Runs of `flow` still going, and the seconds the oldest of them has been going (0 when
/// none is).
async fn in_flight(pool: &PgPool, flow: &Flow) -> Result<(i64, f64), sqlx::Error> {
    let query = format!(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8
         FROM ({}) AS runs WHERE running",
        flow.runs.query
    );
    sqlx::query_as(sqlx::AssertSqlSafe(query))
        .fetch_one(pool)
        .await
}

/// The keeper's task that sets `conveyor_flow_runs_in_flight` for the flows it keeps.
pub struct InFlight {
    pub flows: Vec<&'static Flow>,
    /// The keeper's database.
    pub pool: PgPool,
}

impl InFlight {
    pub async fn run(self, shutdown: Shutdown) {
        while !shutdown.is_fired() {
            for flow in &self.flows {
                match in_flight(&self.pool, flow).await {
                    Ok((count, oldest)) => {
                        METRICS.in_flight.with_label_values(&[flow.name]).set(count);
                        METRICS.oldest.with_label_values(&[flow.name]).set(oldest);
                    }
                    Err(error) => tracing::warn!(
                        flow = flow.name,
                        error = format!("{error:#}"),
                        "Could not count the flow's runs in flight; trying again."
                    ),
                }
            }
            shutdown.sleep(COUNT_EVERY).await;
        }
    }
}
