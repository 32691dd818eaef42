//! Every service in one process: the same `build` and `run` the service binaries use, so the
//! modular monolith and independent deployment run the same code.
//!
//! # Layout
//!
//! - `caches`: rebuilding a service's cached copies from their sources.
//! - `catalog`: what each service sends and receives, from the services themselves.
//! - `start`: starting the chosen services and stopping them together.
//! - `scenario`: the order scenario `conveyor demo` runs and the end-to-end tests check:
//!   users and products for every saga path, orders placed over HTTP, DESIGN.md's
//!   invariants checked against the services' own APIs.

pub mod caches;
mod catalog;
pub mod scenario;
mod start;

pub use catalog::{SERVICES, all_topology, service_events};
pub use start::{Running, SystemConfig, start};
