//! W3C trace context arriving over HTTP: a request whose caller sends `traceparent`
//! continues the caller's trace, as a delivery continues its producer's.

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes `span` a child of the trace the request's `traceparent` names, if it names one.
pub(crate) fn continue_http_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer is installed; then there is no trace to continue.
    let _ = span.set_parent(parent);
}
