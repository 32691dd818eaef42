//! Service plumbing shared by every Conveyor service.
//!
//! # Layout
//!
//! - `auth`: bearer tokens: who a request's caller is, checked against users' published keys.
//! - `binary`: what every service binary does: `--help`, logging, signals, exit status.
//! - `config`: a service's settings from the environment, checked at start-up.
//! - `declaration`: a service declared once (name, events, routes, migrations, cached
//!   copies, how to build it), which whatever lists services reads.
//! - `own_settings`: a service's own settings given in code, read before its environment.
//! - `database`: connecting to a service's own database, creating it if missing.
//! - `migrate`: its migrations, applied by one instance at a time, the others waiting
//!   outside the database (an index built concurrently waits for no waiting replica).
//! - `db_refusal`: database errors caused by the data itself (re-exported by `input`).
//! - `http`: JSON errors and the health routes.
//! - `input`: the rules a request's text must keep (no control characters, a maximum
//!   length per field), checked before it reaches the database, and the database's own
//!   refusals of data answered as the request's fault.
//! - `metrics`: `GET /metrics`, HTTP request metrics and the sampled gauges.
//! - `openapi`: the OpenAPI 3.1 documents, made from the route tables and the types the
//!   handlers read and write.
//! - `republish`: a table's current state sent again, a chunk per transaction.
//! - `routes`: every service's HTTP routes as data (method, path, who may call, whether the
//!   gateway publishes it), the routers built from them and the gateway's allow-list.
//! - `telemetry`: structured logs and spans, set up once per process.
//! - `trace_context`: a request's W3C `traceparent`, continued by its span.
//! - `service_metrics`: HTTP, pool and cached-copy metrics, beside the runtime's.
//! - `service`: the runner that starts the HTTP server, the consumer, the outbox relay and
//!   background tasks, and stops them all on shutdown.

pub mod auth;
mod binary;
pub mod config;
mod database;
mod db_refusal;
mod declaration;
mod http;
pub mod input;
pub mod metrics;
mod migrate;
pub mod openapi;
mod own_settings;
mod republish;
pub mod routes;
mod service;
mod service_metrics;
mod tasks;
pub mod telemetry;
mod trace_context;

pub use auth::{Caller, Scope};
pub use binary::{help, run_binary, run_service, service_settings, settings_list};
pub use config::{ConfigError, OwnSettings, ServiceConfig, duration_setting, parse_duration};
pub use database::{connect_or_create, is_loopback_host};
pub use declaration::{Building, CacheSource, Declaration, Setting};
pub use http::{ApiError, ApiResult, JsonBody, parse_uuid};
pub use input::InputError;
pub use migrate::migrate;
pub use republish::republish;
pub use service::{BackgroundTask, Service, ServiceParts};
pub use service_metrics::copy_updated;
pub use tasks::NamedTasks;
pub use trace_context::{continue_http_trace, trace_headers};
