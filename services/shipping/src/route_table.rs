//! shipping's routes: an order's shipments, and its cached copies of users.

use platform::auth::Scope;
use platform::routes::{Access, Route, Verb};

/// Someone else's order lists as an order without shipments.
pub const ROUTES: &[Route] = &[
    Route::api(Verb::Get, "/shipments", Access::Owner),
    Route::internal(Verb::Get, "/cache/users/{id}", Access::Scope(Scope::ADMIN)),
];
