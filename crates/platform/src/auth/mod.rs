//! Bearer tokens: RS256 JWTs that the users service issues and every service verifies
//! against the keys users publishes at `/.well-known/jwks.json` (defence in depth: the
//! gateway checks them too, but a service reached directly trusts nobody).
//!
//! - `caller`: who a verified token speaks for, and what it may do.
//! - `verifier`: checking a token, with the published keys cached and refetched sparingly.
//! - `middleware`: the axum layers that turn an `Authorization` header into a [`Caller`].

mod caller;
mod middleware;
mod verifier;

pub use caller::{Caller, Claims, Scope};
pub use middleware::{accept_token, bearer_token, refusal, require_token};
pub use verifier::{AuthError, KeyFetch, Verifier};

/// The `iss` of every token users issues.
pub const ISSUER: &str = "conveyor-users";
/// The `aud` of every token users issues: the Conveyor services.
pub const AUDIENCE: &str = "conveyor";
/// Where users publishes its public keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
