//! Logging and tracing, set up once per process.
//!
//! Logs: `RUST_LOG` picks the level (default given by the caller), `LOG_FORMAT=json|pretty`
//! the form (default: pretty on a terminal, JSON otherwise). A JSON line carries the
//! `trace_id` and `span_id` of the span it was written in, the service and, inside an
//! event's handling, its `correlation_id` (`json_log`). Tracing: every span at info and
//! above is also an OpenTelemetry span, whatever the log level, so each HTTP request and each
//! handled event has a trace context that the runtime carries in `traceparent` to the next
//! service: one trace follows an order through every hop. Spans leave the process over OTLP
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`export`).

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod export;
mod json_log;

pub use export::shutdown;

/// Installs the process's subscriber; later calls keep the first one.
pub fn init(service: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        fmt.event_format(json_log::JsonWithTrace {
            service: service.to_owned(),
        })
        .with_filter(filter)
        .boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let provider = export::provider(service);
    let tracer = provider.tracer(service.to_owned());
    opentelemetry::global::set_tracer_provider(provider);
    // Context activation makes an entered span's trace the current one, which JSON lines read.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_context_activation(true)
        .with_filter(LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(json_log::TagLayer)
        .with(logs)
        .with(traces)
        .try_init();
}
