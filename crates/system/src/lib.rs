//! Every service in one process: the same `build` and `run` the service binaries use, so the
//! modular monolith and independent deployment run the same code.
//!
//! # Layout
//!
//! - `alerts`: the alerts, as Prometheus rules and as runbooks.
//! - `caches`: rebuilding a service's cached copies from their sources.
//! - `roster`: the one exhaustive list of services, and everything known of each.
//! - `config`: where the services' databases, broker and ports are (`SystemConfig`).
//! - `deploy`: the deployment files' lists of services, written from the declarations.
//! - `flow_roster`: the system's flows (the order saga, returns), checked against the contract
//!   and the services' consumers, and the map of who emits and handles each event type.
//! - `management`: the RabbitMQ management API, for counts no message is read for.
//! - `gateway`: the gateway in front of the roster's services (and the `api-gateway` binary
//!   in `bin/`).
//! - `catalog`: what each service sends and receives, and each one's OpenAPI document, from
//!   the services themselves.
//! - `start`: starting the chosen services and stopping them together.
//! - `scenario`: the order scenario `conveyor demo` runs and the end-to-end tests check:
//!   users and products for every saga path, orders placed over HTTP, DESIGN.md's
//!   invariants checked against the services' own APIs.

pub mod alerts;
pub mod caches;
mod catalog;
mod config;
pub mod deploy;
mod flow_roster;
mod gateway;
pub mod management;
mod roster;
pub mod scenario;
mod start;

pub use catalog::{
    SYSTEM_BROKER_OWNERS, all_topology, broker_users, openapi_documents, service_events,
};
pub use config::{SystemConfig, run_admin};
pub use flow_roster::{all_flows, flow_map, flow_named, flow_problems};
pub use gateway::{gateway_settings, gateway_settings_help, route_tables};
pub use roster::ServiceName;
pub use start::{Running, start, start_replicas};
pub use users_service::AdminAccount;
