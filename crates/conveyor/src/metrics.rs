//! Prometheus metrics of the process: one registry for every service it runs (each sample
//! names its service), rendered in the text format by each service's `GET /metrics`.
//! Names follow Prometheus conventions: `_total` for counters, base units (`_seconds`).

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The text format's content type.
pub const TEXT_FORMAT: &str = prometheus::TEXT_FORMAT;

/// Buckets for work done within a request or a handler: 1 ms to 10 s.
pub const QUICK: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for a saga from placed to final: 50 ms to 5 min (the deadline is 2 min).
const SAGA: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every metric, registered once per process.
pub struct Metrics {
    registry: Registry,
    /// `conveyor_events_published_total{event_type}`: events the broker confirmed.
    pub events_published: IntCounterVec,
    /// `conveyor_events_consumed_total{service,event_type,outcome}`: deliveries by outcome
    /// (`handled`, `duplicate`, `retried`, `dead_lettered`).
    pub events_consumed: IntCounterVec,
    /// `conveyor_handler_duration_seconds{service,event_type}`.
    pub handler_duration: HistogramVec,
    /// `conveyor_outbox_backlog{service}`: rows not yet published.
    pub outbox_backlog: IntGaugeVec,
    /// `conveyor_outbox_oldest_unsent_age_seconds{service}`: 0 when none waits.
    pub outbox_oldest_age: GaugeVec,
    /// `conveyor_outbox_refusals_total{event_type}`: outbox rows the broker refused for now
    /// (a nack, an unroutable return); each is sent again.
    pub outbox_refusals: IntCounterVec,
    /// `conveyor_outbox_parked{service}`: rows parked because the broker will never take
    /// them; each waits for an operator (`conveyor outbox unpark`).
    pub outbox_parked: IntGaugeVec,
    /// `conveyor_outbox_oldest_parked_age_seconds{service}`: 0 when none is parked.
    pub outbox_oldest_parked_age: GaugeVec,
    /// `conveyor_scheduled_due{service}`: scheduled events whose time has come and that no
    /// relay has moved to the outbox yet (none is sending: the service down, the broker away).
    pub scheduled_due: IntGaugeVec,
    /// `conveyor_scheduled_longest_overdue_seconds{service}`: 0 when none is overdue.
    pub scheduled_longest_overdue: GaugeVec,
    /// `conveyor_consumer_lag_messages{service}`: ready messages in the service's queue.
    pub consumer_lag: IntGaugeVec,
    /// `conveyor_saga_outcomes_total{outcome,reason}`: orders finished.
    pub saga_outcomes: IntCounterVec,
    /// `conveyor_saga_duration_seconds{outcome}`: placed to final.
    pub saga_duration: HistogramVec,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    // Names are fixed and distinct, so registering cannot fail; a failure would only lose
    // this metric from the output, never stop the service.
    let _ = registry.register(Box::new(collector.clone()));
    collector
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|error| panic!("metric {name}: {error}"));
    register(registry, counter)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> HistogramVec {
    let options = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let histogram =
        HistogramVec::new(options, labels).unwrap_or_else(|error| panic!("metric {name}: {error}"));
    register(registry, histogram)
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let gauge = GaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|error| panic!("metric {name}: {error}"));
    register(registry, gauge)
}

fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let gauge = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|error| panic!("metric {name}: {error}"));
    register(registry, gauge)
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Self {
            events_published: counter(
                r,
                "conveyor_events_published_total",
                "Events the broker confirmed, by type.",
                &["event_type"],
            ),
            events_consumed: counter(
                r,
                "conveyor_events_consumed_total",
                "Deliveries a consumer finished with, by outcome.",
                &["service", "event_type", "outcome"],
            ),
            handler_duration: histogram(
                r,
                "conveyor_handler_duration_seconds",
                "Time a handler took for one event.",
                QUICK,
                &["service", "event_type"],
            ),
            outbox_backlog: int_gauge(
                r,
                "conveyor_outbox_backlog",
                "Outbox rows not yet published.",
                &["service"],
            ),
            outbox_oldest_age: gauge(
                r,
                "conveyor_outbox_oldest_unsent_age_seconds",
                "Age of the oldest outbox row not yet published (0 when none waits).",
                &["service"],
            ),
            outbox_refusals: counter(
                r,
                "conveyor_outbox_refusals_total",
                "Outbox rows the broker refused for now (nacked or returned); each is sent again.",
                &["event_type"],
            ),
            outbox_parked: int_gauge(
                r,
                "conveyor_outbox_parked",
                "Outbox rows parked because the broker will never take them.",
                &["service"],
            ),
            outbox_oldest_parked_age: gauge(
                r,
                "conveyor_outbox_oldest_parked_age_seconds",
                "Age of the oldest parked outbox row (0 when none is parked).",
                &["service"],
            ),
            scheduled_due: int_gauge(
                r,
                "conveyor_scheduled_due",
                "Scheduled events due and not yet moved to the outbox to be sent.",
                &["service"],
            ),
            scheduled_longest_overdue: gauge(
                r,
                "conveyor_scheduled_longest_overdue_seconds",
                "How long the earliest scheduled event not yet moved to the outbox has been due (0 when none is).",
                &["service"],
            ),
            consumer_lag: int_gauge(
                r,
                "conveyor_consumer_lag_messages",
                "Messages ready in the service's queue, not yet delivered.",
                &["service"],
            ),
            saga_outcomes: counter(
                r,
                "conveyor_saga_outcomes_total",
                "Orders finished, by outcome and reason.",
                &["outcome", "reason"],
            ),
            saga_duration: histogram(
                r,
                "conveyor_saga_duration_seconds",
                "Time from an order placed to confirmed or cancelled.",
                SAGA,
                &["outcome"],
            ),
            registry,
        }
    }

    // Metrics of the layers above the runtime (a service's HTTP requests), made here so the
    // one `GET /metrics` renders them beside the runtime's own.

    /// A counter registered in the process's registry.
    pub fn new_counter(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        counter(&self.registry, name, help, labels)
    }

    /// A histogram registered in the process's registry.
    pub fn new_histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> HistogramVec {
        histogram(&self.registry, name, help, buckets, labels)
    }

    /// A gauge registered in the process's registry.
    pub fn new_gauge(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        gauge(&self.registry, name, help, labels)
    }

    /// An integer gauge registered in the process's registry.
    pub fn new_int_gauge(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        int_gauge(&self.registry, name, help, labels)
    }

    /// Every metric in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text)
        {
            tracing::warn!(%error, "Metrics could not be rendered.");
        }
        text
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_render_under_their_prometheus_names() {
        metrics()
            .events_consumed
            .with_label_values(&["unit", "order.created", "handled"])
            .inc();
        metrics()
            .handler_duration
            .with_label_values(&["unit", "order.created"])
            .observe(0.002);
        let text = metrics().render();
        assert!(text.contains(
            r#"conveyor_events_consumed_total{event_type="order.created",outcome="handled",service="unit"} 1"#
        ), "{text}");
        assert!(text.contains("# TYPE conveyor_handler_duration_seconds histogram"));
        assert!(text.contains("conveyor_handler_duration_seconds_bucket"));
    }
}
