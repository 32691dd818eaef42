//! The routes every service (and the gateway, at its root) answers for operators and
//! orchestrators, served by the runner ([`crate::Service`]) rather than by the service.

use super::{Access, Route, Verb};

/// Alive.
pub const HEALTH: Route = Route::internal(Verb::Get, "/healthz", Access::Open);
/// The database and broker connections are up.
pub const READY: Route = Route::internal(Verb::Get, "/readyz", Access::Open);
/// Prometheus' scrape, which carries no token.
pub const METRICS: Route = Route::internal(Verb::Get, "/metrics", Access::Open);
/// The service's OpenAPI document ([`crate::openapi`]): every row of its table and these.
/// The gateway answers it at its root too, with its public document (which it also
/// publishes at `/api/openapi.json`, a row of its own table).
pub const OPENAPI: Route = Route::internal(Verb::Get, "/openapi.json", Access::Open);

pub const ROUTES: &[Route] = &[HEALTH, READY, METRICS, OPENAPI];
