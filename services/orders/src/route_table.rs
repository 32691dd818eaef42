//! orders' routes: placing, reading, listing and cancelling orders, returning their lines,
//! and its cached copies.

use platform::auth::Scope;
use platform::routes::{Access, Route, Verb};

/// A customer places, lists, reads and cancels only their own orders (placing or listing
/// for someone else is 403, someone else's order is 404); an admin acts for anyone; a
/// producing system for no one.
pub const ROUTES: &[Route] = &[
    Route::api(Verb::Post, "/orders", Access::Owner),
    Route::api(Verb::Get, "/orders", Access::Owner),
    Route::api(Verb::Get, "/orders/{id}", Access::Owner),
    Route::api(Verb::Post, "/orders/{id}/cancel", Access::Owner),
    Route::api(Verb::Post, "/orders/{id}/returns", Access::Owner),
    Route::api(Verb::Get, "/returns/{id}", Access::Owner),
    Route::api(Verb::Post, "/returns/{id}/cancel", Access::Owner),
    Route::internal(Verb::Get, "/cache/users/{id}", Access::Scope(Scope::ADMIN)),
    Route::internal(
        Verb::Get,
        "/cache/products/{sku}",
        Access::Scope(Scope::ADMIN),
    ),
];
