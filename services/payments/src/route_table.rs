//! payments' routes: an order's payments, and its cached copies of users.

use platform::auth::Scope;
use platform::routes::{Access, Route, Verb};

/// Someone else's order lists as an order without payments.
pub const ROUTES: &[Route] = &[
    Route::api(Verb::Get, "/payments", Access::Owner),
    Route::internal(Verb::Get, "/cache/users/{id}", Access::Scope(Scope::ADMIN)),
];
