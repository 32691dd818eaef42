//! `GET /metrics` on every service: the runtime's Prometheus metrics and the service's own
//! (`service_metrics`), each HTTP request counted by route and status, and gauges sampled
//! every few seconds (the outbox's backlog
//! and the age of its oldest row, database pool use, the consumer's lag).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conveyor::metrics::metrics;
use conveyor::{AmqpConfig, Shutdown};
use sqlx::PgPool;

/// How often the sampled gauges are refreshed.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The metrics in Prometheus's text format.
pub async fn render() -> Response {
    crate::service_metrics::refresh_cache_ages();
    (
        [(header::CONTENT_TYPE, conveyor::metrics::TEXT_FORMAT)],
        metrics().render(),
    )
        .into_response()
}

/// The route label of a request no route template matched, set by an outer layer that
/// knows better than `unmatched` (the gateway: `/api/orders/…`). Keep its values few.
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// Counts and times each request by its route's template (`/orders/{id}`), so the number of
/// series stays bounded whatever the paths asked for.
pub async fn track_http(State(service): State<Arc<str>>, request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    let route = match (
        extensions.get::<MatchedPath>(),
        extensions.get::<RouteLabel>(),
    ) {
        (Some(path), _) => path.as_str().to_owned(),
        (None, Some(label)) => label.0.clone(),
        (None, None) => "unmatched".to_owned(),
    };
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = crate::service_metrics::service_metrics();
    metrics
        .http_requests
        .with_label_values(&[
            &*service,
            route.as_str(),
            method.as_str(),
            response.status().as_str(),
        ])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[&*service, route.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// What the sampler looks at.
pub(crate) struct Sampled {
    pub(crate) service: String,
    pub(crate) pool: PgPool,
    /// The broker and the service's queue, when it consumes.
    pub(crate) queue: Option<SampledQueue>,
}

/// A service's queue, whose depth is its consumer's lag.
pub(crate) struct SampledQueue {
    pub(crate) amqp: AmqpConfig,
    pub(crate) name: String,
    /// Looked at only while the consumer is connected: before its first session the queue
    /// may not exist yet, and a look at a missing queue is a channel the broker closes with
    /// NOT_FOUND, which lapin logs as an error.
    pub(crate) consumer: std::sync::Arc<conveyor::ConsumerStats>,
}

/// Refreshes the sampled gauges until `shutdown` fires; a source that fails keeps its last
/// value and is tried again next time.
pub(crate) async fn sample(sampled: Sampled, shutdown: Shutdown) {
    let mut broker: Option<lapin::Connection> = None;
    loop {
        tokio::select! {
            () = sample_once(&sampled, &mut broker) => {}
            () = shutdown.fired() => break,
        }
        if shutdown.sleep(SAMPLE_EVERY).await {
            break;
        }
    }
    if let Some(connection) = broker {
        conveyor::close_within(&connection, "metrics stopped", BROKER_WAIT).await;
    }
}

/// The longest the sampler waits for the broker's answer; past it the connection is
/// dropped and a new one opened next time.
const BROKER_WAIT: Duration = Duration::from_secs(5);

async fn sample_once(sampled: &Sampled, broker: &mut Option<lapin::Connection>) {
    sample_outbox(sampled).await;
    sample_schedule(sampled).await;
    sample_pool(sampled);
    if let Some(queue) = &sampled.queue
        && queue.consumer.is_connected()
    {
        sample_lag(&sampled.service, &queue.amqp, &queue.name, broker).await;
    }
}

async fn sample_outbox(sampled: &Sampled) {
    // One scan for both: rows waiting to be sent, and rows parked for an operator.
    let outbox: Result<(i64, Option<f64>, i64, Option<f64>), _> = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                extract(epoch FROM clock_timestamp()
                    - min(created_at) FILTER (WHERE parked_at IS NULL))::float8,
                count(*) FILTER (WHERE parked_at IS NOT NULL),
                extract(epoch FROM clock_timestamp()
                    - min(created_at) FILTER (WHERE parked_at IS NOT NULL))::float8
         FROM conveyor.outbox WHERE published_at IS NULL",
    )
    .fetch_one(&sampled.pool)
    .await;
    let Ok((waiting, oldest_waiting, parked, oldest_parked)) = outbox else {
        return;
    };
    let metrics = metrics();
    let service = [sampled.service.as_str()];
    metrics
        .outbox_backlog
        .with_label_values(&service)
        .set(waiting);
    metrics
        .outbox_oldest_age
        .with_label_values(&service)
        .set(oldest_waiting.unwrap_or(0.0));
    metrics
        .outbox_parked
        .with_label_values(&service)
        .set(parked);
    metrics
        .outbox_oldest_parked_age
        .with_label_values(&service)
        .set(oldest_parked.unwrap_or(0.0));
}

async fn sample_schedule(sampled: &Sampled) {
    let Ok((due, longest)) = conveyor::scheduled::overdue(&sampled.pool).await else {
        return;
    };
    let metrics = metrics();
    let service = [sampled.service.as_str()];
    metrics.scheduled_due.with_label_values(&service).set(due);
    metrics
        .scheduled_longest_overdue
        .with_label_values(&service)
        .set(longest);
}

fn sample_pool(sampled: &Sampled) {
    let pool = &sampled.pool;
    let size = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
    let max = i64::from(pool.options().get_max_connections());
    let gauge = &crate::service_metrics::service_metrics().db_pool;
    for (state, value) in [("in_use", size - idle), ("idle", idle), ("max", max)] {
        gauge
            .with_label_values(&[sampled.service.as_str(), state])
            .set(value);
    }
}

async fn sample_lag(
    service: &str,
    amqp: &AmqpConfig,
    queue: &str,
    broker: &mut Option<lapin::Connection>,
) {
    if !broker
        .as_ref()
        .is_some_and(|connection| connection.status().connected())
    {
        *broker = amqp
            .named(format!("{service} metrics"))
            .connect()
            .await
            .ok();
    }
    let Some(connection) = broker else {
        return;
    };
    match tokio::time::timeout(BROKER_WAIT, conveyor::queue_depth(connection, queue)).await {
        Ok(Ok(declared)) => metrics()
            .consumer_lag
            .with_label_values(&[service])
            .set(i64::from(declared.message_count())),
        Ok(Err(_)) => {}
        // A connection that answers nothing is of no use: the next sample opens another.
        Err(_) => {
            if let Some(stale) = broker.take() {
                tokio::spawn(async move {
                    conveyor::close_within(&stale, "no answer", BROKER_WAIT).await;
                });
            }
        }
    }
}
