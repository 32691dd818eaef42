//! JSON log lines an operator can join with traces: each carries the OpenTelemetry
//! `trace_id` and `span_id` of the span it was written in, the service, and the event's
//! `correlation_id` where a span names one.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The `service` and `correlation_id` fields a span was given, kept for the lines written
/// inside it.
#[derive(Clone, Default)]
struct Tags {
    service: Option<String>,
    correlation_id: Option<String>,
}

impl Visit for Tags {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field, format!("{value:?}"));
    }
}

impl Tags {
    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "service" => self.service = Some(value),
            "correlation_id" => self.correlation_id = Some(value),
            _ => {}
        }
    }
}

/// Keeps each span's [`Tags`] in its extensions.
pub(super) struct TagLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TagLayer {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut tags = Tags::default();
        attributes.record(&mut tags);
        if (tags.service.is_some() || tags.correlation_id.is_some())
            && let Some(span) = context.span(id)
        {
            span.extensions_mut().insert(tags);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        if let Some(span) = context.span(id) {
            let mut extensions = span.extensions_mut();
            let mut tags = extensions.remove::<Tags>().unwrap_or_default();
            values.record(&mut tags);
            extensions.insert(tags);
        }
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
/// `span`, `service`, and where known `correlation_id`, `trace_id` and `span_id`.
pub(super) struct JsonWithTrace {
    /// The process's name, for lines written outside any service's span.
    pub(super) service: String,
}

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        line.insert("fields".into(), Value::Object(fields.0));
        let (mut service, mut correlation_id) = (None, None);
        // Innermost span first: the nearest service and correlation id win.
        for span in context.event_scope().into_iter().flatten() {
            line.entry("span").or_insert_with(|| span.name().into());
            if let Some(tags) = span.extensions().get::<Tags>() {
                service = service.or_else(|| tags.service.clone());
                correlation_id = correlation_id.or_else(|| tags.correlation_id.clone());
            }
        }
        line.insert(
            "service".into(),
            service.unwrap_or_else(|| self.service.clone()).into(),
        );
        if let Some(correlation_id) = correlation_id {
            line.insert("correlation_id".into(), correlation_id.into());
        }
        // The OpenTelemetry layer makes an entered span's context the current one.
        opentelemetry::Context::map_current(|current| {
            let span = current.span();
            let span_context = span.span_context();
            if span_context.is_valid() {
                line.insert(
                    "trace_id".into(),
                    span_context.trace_id().to_string().into(),
                );
                line.insert("span_id".into(), span_context.span_id().to_string().into());
            }
        });
        writeln!(writer, "{}", Value::Object(line))
    }
}
