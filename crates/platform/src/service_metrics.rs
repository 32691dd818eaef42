//! The metrics of a service around the runtime: its HTTP requests, its database pool and the
//! age of its cached copies. Registered in the runtime's registry, so one `GET /metrics`
//! renders them beside the runtime's own.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Instant;

use conveyor::HandlerContext;
use conveyor::metrics::{QUICK, metrics};
use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

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

// The names and labels are fixed and valid: building them cannot fail.
static SERVICE_METRICS: LazyLock<ServiceMetrics> = LazyLock::new(|| {
    let registered = metrics();
    ServiceMetrics {
        http_requests: registered.register(
            IntCounterVec::new(
                Opts::new(
                    "http_requests_total",
                    "HTTP requests answered, by route and status.",
                ),
                &["service", "route", "method", "status"],
            )
            .expect("a valid metric"),
        ),
        http_duration: registered.register(
            HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time to answer an HTTP request.",
                )
                .buckets(QUICK.to_vec()),
                &["service", "route", "method"],
            )
            .expect("a valid metric"),
        ),
        db_pool: registered.register(
            IntGaugeVec::new(
                Opts::new(
                    "db_pool_connections",
                    "Database pool connections: in_use, idle and max.",
                ),
                &["service", "state"],
            )
            .expect("a valid metric"),
        ),
        cache_age: registered.register(
            GaugeVec::new(
                Opts::new(
                    "conveyor_cache_age_seconds",
                    "Time since the newest update a cached copy applied.",
                ),
                &["service", "copy"],
            )
            .expect("a valid metric"),
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
