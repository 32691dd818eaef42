//! users' routes: sign-up, users, tokens, producing systems' credentials and signing keys.

use platform::auth::{JWKS_PATH, Scope};
use platform::routes::{Access, Route, Verb};

/// Owner rows answer someone else's user as no user (404); an admin may also set and change
/// credit limits, which a customer may not (403 from the handler).
pub const ROUTES: &[Route] = &[
    // Signing up is open; an admin may register users too (with a credit limit).
    Route::sign_in(Verb::Post, "/users"),
    Route::api(Verb::Get, "/users/{id}", Access::Owner),
    Route::api(Verb::Patch, "/users/{id}", Access::Owner),
    Route::api(Verb::Post, "/users/{id}/deactivate", Access::Owner),
    // Operators rebuild cached copies straight at the service (`conveyor cache rebuild`).
    Route::internal(Verb::Post, "/users/republish", Access::Scope(Scope::ADMIN)),
    Route::sign_in(Verb::Post, "/auth/token"),
    // What a token's credential grants now: the operators' console asks it at users itself
    // on each page, so a revoked grant does not wait for the session's token to expire.
    Route::internal(Verb::Get, "/auth/grants", Access::AnyCaller),
    // The services fetch the keys from users itself, at USERS_URL.
    Route::internal(Verb::Get, JWKS_PATH, Access::Open),
    Route::api(Verb::Post, "/auth/clients", Access::Scope(Scope::ADMIN)),
    // Rotating and retiring keys is an operator's act on users itself.
    Route::internal(Verb::Post, "/auth/keys", Access::Scope(Scope::ADMIN)),
    Route::internal(
        Verb::Post,
        "/auth/keys/{kid}/retire",
        Access::Scope(Scope::ADMIN),
    ),
];
