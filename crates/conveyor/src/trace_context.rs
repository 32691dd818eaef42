//! W3C trace context (`traceparent`, `tracestate`) carried across the broker, so the
//! consumer's span continues the producer's trace.

use std::collections::BTreeMap;

use lapin::types::FieldTable;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::headers;

/// Trace headers captured from the current span, ready to travel with a message.
pub type TraceHeaders = BTreeMap<String, String>;

struct MapInjector<'a>(&'a mut TraceHeaders);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct FieldTableExtractor<'a>(&'a FieldTable);

impl Extractor for FieldTableExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        headers::get_str(self.0, key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|key| key.as_str()).collect()
    }
}

/// The current span's trace context as headers; empty when no OpenTelemetry layer is
/// installed or the span is not sampled into a trace.
pub fn capture_current() -> TraceHeaders {
    let context = tracing::Span::current().context();
    let mut captured = TraceHeaders::new();
    TraceContextPropagator::new().inject_context(&context, &mut MapInjector(&mut captured));
    captured
}

/// Makes `span` a child of the trace whose context `amqp_headers` carry, if any.
pub(crate) fn continue_trace(span: &tracing::Span, amqp_headers: &FieldTable) {
    if headers::get_str(amqp_headers, headers::TRACEPARENT).is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&FieldTableExtractor(amqp_headers));
    // Fails only when no OpenTelemetry layer is installed; then there is no trace to continue.
    let _ = span.set_parent(parent);
}
