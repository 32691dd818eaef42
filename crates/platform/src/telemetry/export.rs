//! Exporting spans over OTLP, as the OpenTelemetry SDK's standard variables say:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on,
//! `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (built in) or `grpc` (with the
//! `otlp-grpc` feature), `OTEL_SERVICE_NAME` names the service and `OTEL_TRACES_SAMPLER`
//! samples. Unset, nothing leaves the process: spans still carry ids, so `traceparent`
//! and the ids in log lines work the same.

use std::sync::OnceLock;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The provider whose spans are exported, kept to flush them at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

fn set(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|value| !value.trim().is_empty())
}

/// Whether the environment asks for export.
pub(super) fn wanted() -> bool {
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && std::env::var("OTEL_TRACES_EXPORTER").as_deref() != Ok("none")
}

/// The process's tracer provider: exporting in batches when the environment asks, with the
/// sampler the environment names (the SDK reads `OTEL_TRACES_SAMPLER` itself).
pub(super) fn provider(service: &str) -> SdkTracerProvider {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| service.to_owned());
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(name).build());
    if wanted() {
        match exporter() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(why) => eprintln!("warning: spans are not exported: {why}"),
        }
    }
    let provider = builder.build();
    let _ = PROVIDER.set(provider.clone());
    provider
}

fn exporter() -> Result<opentelemetry_otlp::SpanExporter, String> {
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".to_owned());
    match protocol.trim() {
        "http/protobuf" => {}
        "grpc" if cfg!(feature = "otlp-grpc") => {}
        "grpc" => {
            return Err(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs a build with the otlp-grpc feature \
                 (cargo build --features platform/otlp-grpc); use http/protobuf (port 4318) \
                 otherwise"
                    .to_owned(),
            );
        }
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use http/protobuf or grpc"
            ));
        }
    }
    // Picks the transport from the same variables.
    opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|error| error.to_string())
}

/// Sends the spans still buffered; call once as the process ends, after its last span.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && wanted()
        && let Err(error) = provider.shutdown()
    {
        eprintln!("warning: the last spans could not be exported: {error}");
    }
}
