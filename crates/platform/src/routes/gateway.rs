//! The routes the gateway answers itself rather than forwarding; their paths are under its
//! `/api` prefix, as [`Route::api_path`] gives them.

use super::{Access, Route, Verb};
use crate::auth::Scope;

/// A user's profile, newest orders and their payments and shipments, fetched with the
/// caller's token: someone else's is users' 404.
pub const SUMMARY: Route = Route::api(Verb::Get, "/users/{id}/summary", Access::Owner);

/// Events from producing systems outside AMQP, of the types an admin granted the client.
pub const EVENTS: Route = Route::api(
    Verb::Post,
    "/events",
    Access::Granted(Scope::EVENTS_PUBLISH),
);

/// The public OpenAPI document: every route the gateway publishes, open to anyone.
pub const OPENAPI: Route = Route::api(Verb::Get, "/openapi.json", Access::Open);

pub const ROUTES: &[Route] = &[SUMMARY, EVENTS, OPENAPI];
