//! The users service: registers users, changes and deactivates them, and publishes every
//! change (`user.registered`, `user.updated`, `user.deactivated`) with a version that grows
//! by one, so other services keep cached copies that never go backwards.
//!
//! # Layout
//!
//! - `http`: the API (`POST /users`, `GET` and `PATCH /users/{id}`, `POST /users/{id}/deactivate`).
//! - `route_table`: each route's method, path, who may call it and whether the gateway
//!   publishes it: the table the router, the gateway and the OpenAPI document follow.
//! - `user`: the user row, its validation and its events.
//! - `auth`: tokens (`POST /auth/token`), producing systems' credentials, the public keys.
//! - `guessing`: failed sign-ins counted per login and client address, which slow down
//!   further attempts.
//! - `client_address`: which address a sign-in comes from (the peer's, or the one the
//!   gateway forwarded when it proves it is the gateway).
//! - `keys`: the keys tokens are signed with.
//! - `passwords`: argon2id hashes of passwords and client secrets.
//! - `settings`: what the environment says.

mod auth;
mod client_address;
mod guessing;
mod http;
mod keys;
mod passwords;
mod route_table;
mod settings;
mod user;

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Outbox, Shutdown};
use platform::auth::Verifier;
use platform::{Service, ServiceConfig, ServiceParts};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "users";
/// Everything the system knows of this service: whatever lists services reads it.
pub static DECLARATION: platform::Declaration = platform::Declaration {
    name: SERVICE,
    default_port: 8081,
    summary: "registers users, changes and deactivates them, issues their events (user.registered, user.updated, user.deactivated) for other services' cached copies.",
    settings: &[
        platform::Setting {
            variable: "JWT_PRIVATE_KEY",
            meaning: "the RSA private key tokens are signed with, in PEM or the path of a PEM file [default: one made at first start and kept in the database, shared by every replica]",
        },
        platform::Setting {
            variable: "CONVEYOR_ADMIN_EMAIL, CONVEYOR_ADMIN_PASSWORD",
            meaning: "when both are set, an admin account with this email and password is created at start (or its password set)",
        },
        platform::Setting {
            variable: "TOKEN_LIFETIME",
            meaning: "how long a token is valid, in seconds from 60 to 86400 [default: 3600]",
        },
        platform::Setting {
            variable: "SIGN_IN_FAILURES",
            meaning: "failed sign-ins for one login from one client address before each further attempt from there waits (429 with Retry-After, no password checked): 1 s, doubling with each failure; unknown logins count the same; a success clears the count [default: 5]",
        },
        platform::Setting {
            variable: "SIGN_IN_WINDOW",
            meaning: "seconds after its last failure that a login and address's count is forgotten, from 60 to 86400; keep it longer than SIGN_IN_MAX_DELAY, or waiting out the longest wait starts a new count [default: 3600]",
        },
        platform::Setting {
            variable: "SIGN_IN_MAX_DELAY",
            meaning: "the longest wait between two attempts after failures, in seconds, at most SIGN_IN_WINDOW [default: 900]",
        },
        platform::Setting {
            variable: "GATEWAY_FORWARD_SECRET",
            meaning: "the secret the gateway sends as X-Conveyor-Gateway (set the same for both, 32 visible ASCII characters or more): only a request carrying it has its X-Forwarded-For believed for the sign-in counts [default: none: every forwarded address is ignored]",
        },
    ],
    emits: &["user.registered", "user.updated", "user.deactivated"],
    routes: ROUTES,
    migrator: &MIGRATOR,
    cache_sources: &[],
    consumer: None,
    openapi,
    build: |config| Box::pin(build(config)),
};

pub use auth::AdminAccount;
pub use client_address::{ForwardSecret, ForwardSecretError, MIN_SECRET_CHARS};
pub use guessing::SignInLimits;
pub use settings::Settings;

/// Every HTTP route of this service, who may call it and whether the gateway publishes it;
/// the router is built from it. Kept in `platform`, where the gateway reads it too.
pub use route_table::ROUTES;

/// This service's tables, as it creates them at start (tests migrate their own databases).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {
    let settings = config.own_settings.or_read(Settings::from_env)?;
    let contract = events_schema::EventContract::shared()?;
    let mut ring = None;
    let service = Service::build(config, &MIGRATOR, |pool| {
        let keys = Arc::new(keys::KeyRing::new(
            pool.clone(),
            settings.private_key.as_deref(),
        )?);
        ring = Some(keys.clone());
        let state = Arc::new(http::AppState {
            pool: pool.clone(),
            outbox: Outbox::new().with_contract(contract),
        });
        let auth = Arc::new(auth::AuthState {
            pool: pool.clone(),
            keys: keys.clone(),
            token_lifetime: settings.token_lifetime,
            sign_in: settings.sign_in,
            forward_secret: settings.forward_secret.clone(),
        });
        // Replicas pick up a rotated key when it starts signing.
        let reloading = keys.clone();
        let reload: platform::BackgroundTask = Box::new(move |shutdown| {
            Box::pin(async move { reload_keys(&reloading, &shutdown).await })
        });
        let (purging, window) = (pool.clone(), settings.sign_in.window);
        let purge: platform::BackgroundTask =
            Box::new(move |shutdown| Box::pin(guessing::purge_old(purging, window, shutdown)));
        // users checks tokens against its own keys, read from its database, not over HTTP.
        let verifier = Verifier::new(Arc::new(move || {
            let keys = keys.clone();
            Box::pin(async move { keys.published().await })
        }));
        let (router, public) = routes(state, auth).finish()?;
        Ok(ServiceParts {
            router,
            public,
            verifier: Some(verifier),
            consumer: None,
            background: vec![reload, purge],
            openapi: openapi()?,
        })
    })
    .await?;
    if let Some(ring) = ring {
        ring.load().await?;
    }
    if let Some(admin) = &settings.admin {
        auth::ensure_admin(service.pool(), admin).await?;
    }
    Ok(service)
}

/// The users API and the token routes, each handler against its row of [`ROUTES`].
fn routes(state: Arc<http::AppState>, auth: Arc<auth::AuthState>) -> platform::routes::Routes {
    auth::routes(
        http::routes(platform::routes::Routes::new(ROUTES), state),
        auth,
    )
}

/// This service's OpenAPI document, served at `GET /openapi.json`: every row of [`ROUTES`],
/// described next to its handler.
///
/// # Errors
/// When a row is not described, or a description has no row.
pub fn openapi() -> Result<serde_json::Value, platform::routes::TableMismatch> {
    auth::api(http::api(platform::openapi::Api::new(SERVICE, ROUTES))).finish()
}

/// Loads the signing key again every few seconds until `shutdown` fires.
async fn reload_keys(keys: &keys::KeyRing, shutdown: &Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                if let Err(error) = keys.load().await {
                    tracing::warn!(error = format!("{error:#}"), "Cannot reload the token signing key; signing with the one loaded.");
                }
            }
            () = shutdown.fired() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_router_serves_its_route_table_and_nothing_else() {
        let pool = platform::routes::probe_pool().unwrap();
        let auth = Arc::new(auth::AuthState {
            pool: pool.clone(),
            keys: Arc::new(keys::KeyRing::new(pool.clone(), None).unwrap()),
            token_lifetime: Duration::from_secs(60),
            sign_in: SignInLimits::default(),
            forward_secret: None,
        });
        let state = Arc::new(http::AppState {
            pool,
            outbox: Outbox::new(),
        });
        platform::routes::assert_serves(routes(state, auth).finish(), ROUTES).await;
    }

    #[test]
    fn the_openapi_document_describes_every_row_and_nothing_else() {
        let document = openapi().unwrap();
        platform::openapi::assert_describes(&document, ROUTES);
        let sign_up = &document["paths"]["/users"]["post"]["requestBody"]["content"];
        let fields = &sign_up["application/json"]["schema"]["properties"];
        assert_eq!(fields["email"]["maxLength"], 254, "{fields}");
        assert_eq!(
            fields["address"]["properties"]["country"]["pattern"],
            "^[A-Z]{2}$"
        );
        assert_eq!(
            fields["credit_limit_cents"]["maximum"],
            1_000_000_000_000_i64
        );
    }
}
