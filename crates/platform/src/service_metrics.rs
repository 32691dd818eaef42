//! The metrics of a service around the runtime: its HTTP requests, its database pool and the
//! age of its cached copies. Registered in the runtime's registry, so one `GET /metrics`
//! renders them beside the runtime's own.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Instant;

use conveyor::HandlerContext;
use conveyor::metrics::{QUICK, metrics};
use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec};

pub(crate) struct ServiceMetrics {
    /// `http_requests_total{service,route,method,status}`.
    pub(crate) http_requests: IntCounterVec,
    /// `http_request_duration_seconds{service,route,method}`.
    pub(crate) http_duration: HistogramVec,
    /// `db_pool_connections{service,state}`: `in_use`, `idle` and `max`.
    pub(crate) db_pool: IntGaugeVec,
    /// `conveyor_cache_age_seconds{service,copy}`: since the newest update a cached copy
    /// applied, set from `copies_updated` at each rendering.
    cache_age: GaugeVec,
    copies_updated: Mutex<HashMap<(String, &'static str), Instant>>,
}

static SERVICE_METRICS: LazyLock<ServiceMetrics> = LazyLock::new(|| {
    let registry = metrics();
    ServiceMetrics {
        http_requests: registry.new_counter(
            "http_requests_total",
            "HTTP requests answered, by route and status.",
            &["service", "route", "method", "status"],
        ),
        http_duration: registry.new_histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            QUICK,
            &["service", "route", "method"],
        ),
        db_pool: registry.new_int_gauge(
            "db_pool_connections",
            "Database pool connections: in_use, idle and max.",
            &["service", "state"],
        ),
        cache_age: registry.new_gauge(
            "conveyor_cache_age_seconds",
            "Time since the newest update a cached copy applied.",
            &["service", "copy"],
        ),
        copies_updated: Mutex::default(),
    }
});

pub(crate) fn service_metrics() -> &'static ServiceMetrics {
    &SERVICE_METRICS
}

/// Notes that the handling in `ctx` changed `rows` rows of the cached copy `copy` (`users`,
/// `products`): once it commits, the copy's age in `conveyor_cache_age_seconds` starts again
/// from zero. A stale update that changed nothing leaves the age as it is.
pub fn copy_updated(ctx: &mut HandlerContext<'_>, copy: &'static str, rows: u64) {
    if rows > 0 {
        let service = ctx.service().to_owned();
        ctx.after_commit(move || {
            service_metrics()
                .copies_updated
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((service, copy), Instant::now());
        });
    }
}

/// Sets each copy's age from its last update, just before a rendering.
pub(crate) fn refresh_cache_ages() {
    let metrics = service_metrics();
    for ((service, copy), updated) in metrics
        .copies_updated
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        metrics
            .cache_age
            .with_label_values(&[service.as_str(), *copy])
            .set(updated.elapsed().as_secs_f64());
    }
}
