//! inventory's routes: the catalogue, stock, and the saga's reservations.

use platform::auth::Scope;
use platform::routes::{Access, Route, Verb};

/// Any caller reads a product; `inventory:write` (a producing system's scope) creates and
/// changes products, their prices and their stock.
pub const ROUTES: &[Route] = &[
    Route::api(
        Verb::Post,
        "/products",
        Access::Scope(Scope::INVENTORY_WRITE),
    ),
    Route::api(Verb::Get, "/products/{sku}", Access::AnyCaller),
    Route::api(
        Verb::Patch,
        "/products/{sku}",
        Access::Scope(Scope::INVENTORY_WRITE),
    ),
    Route::api(
        Verb::Put,
        "/products/{sku}/stock",
        Access::Scope(Scope::INVENTORY_WRITE),
    ),
    // Rebuilding other services' copies is an operator's act, like `/users/republish`:
    // admin only, straight at the service (`conveyor cache rebuild`).
    Route::internal(
        Verb::Post,
        "/products/republish",
        Access::Scope(Scope::ADMIN),
    ),
    // Read by the invariant checks and operators, not by clients.
    Route::internal(
        Verb::Get,
        "/reservations/{order_id}",
        Access::Scope(Scope::INVENTORY_WRITE),
    ),
];
