//! The routes every service (and the gateway, at its root) answers for operators and
//! orchestrators, served by the runner ([`crate::Service`]) rather than by the service.

use super::{Access, Route, Verb};

/// Alive.
pub const HEALTH: Route = Route::internal(Verb::Get, "/healthz", Access::Open);
/// The database and broker connections are up.
pub const READY: Route = Route::internal(Verb::Get, "/readyz", Access::Open);
/// Prometheus' scrape, which carries no token.
pub const METRICS: Route = Route::internal(Verb::Get, "/metrics", Access::Open);

pub const ROUTES: &[Route] = &[HEALTH, READY, METRICS];
