//! W3C trace context (`traceparent`, `tracestate`) carried across the broker, so the
//! consumer's span continues the producer's trace.

use std::collections::BTreeMap;

use lapin::types::FieldTable;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
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

struct MapExtractor<'a>(&'a TraceHeaders);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
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

/// The relay's `publish` span for one stored event: a child of the span that wrote it
/// (whose context `written_in` holds). Answers the headers that carry the publish span on,
/// so the consumer's span is its child; `written_in` itself when no trace is recorded.
pub(crate) fn publish_span(written_in: &TraceHeaders, event_type: &str) -> TraceHeaders {
    if written_in.is_empty() {
        return TraceHeaders::new();
    }
    let span = tracing::info_span!(parent: None, "publish", event_type, otel.kind = "producer");
    let parent = TraceContextPropagator::new().extract(&MapExtractor(written_in));
    let _ = span.set_parent(parent);
    let captured = span.in_scope(capture_current);
    if captured.is_empty() {
        written_in.clone()
    } else {
        captured
    }
}

/// A replay's new trace for a dead letter (`id`), linked to the trace the letter belonged to
/// (carried in `amqp_headers`): what the replay leads to is traced anew, and the trace shows
/// where it came from. Answers the new trace's headers; empty when no trace is recorded.
pub(crate) fn replay_trace(amqp_headers: &FieldTable, id: &str) -> TraceHeaders {
    let span = tracing::info_span!(parent: None, "replay", letter_id = id, otel.kind = "producer");
    if headers::get_str(amqp_headers, headers::TRACEPARENT).is_some() {
        let original = TraceContextPropagator::new().extract(&FieldTableExtractor(amqp_headers));
        span.add_link(original.span().span_context().clone());
    }
    span.in_scope(capture_current)
}
