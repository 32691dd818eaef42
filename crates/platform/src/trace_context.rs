//! W3C trace context over HTTP: a request whose caller sends `traceparent` continues the
//! caller's trace, as a delivery continues its producer's; a request sent on (the
//! gateway's) carries the sender's span.

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the trace the request's `traceparent` names, if it names one.
pub fn continue_http_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer is installed; then there is no trace to continue.
    let _ = span.set_parent(parent);
}

/// The current span's context as W3C headers (`traceparent`, and `tracestate` when there is
/// one), for a request sent on; empty when no span is being traced.
pub fn trace_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    headers
}
