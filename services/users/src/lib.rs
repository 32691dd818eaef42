//! The users service: registers users, changes and deactivates them, and publishes every
//! change (`user.registered`, `user.updated`, `user.deactivated`) with a version that grows
//! by one, so other services keep cached copies that never go backwards.
//!
//! # Layout
//!
//! - `http`: the API (`POST /users`, `GET` and `PATCH /users/{id}`, `POST /users/{id}/deactivate`).
//! - `user`: the user row, its validation and its events.
//! - `auth`: tokens (`POST /auth/token`), producing systems' credentials, the public keys.
//! - `keys`: the keys tokens are signed with.
//! - `passwords`: argon2id hashes of passwords and client secrets.

mod auth;
mod http;
mod keys;
mod passwords;
mod user;

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Outbox, Shutdown};
use platform::auth::Verifier;
use platform::{ConfigError, Service, ServiceConfig, ServiceParts};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "users";
/// The event types this service emits (for the AsyncAPI document).
pub const EMITS: &[&str] = &["user.registered", "user.updated", "user.deactivated"];
pub const DEFAULT_PORT: u16 = 8081;
/// What `users-service --help` says.
pub const ABOUT: platform::About = platform::About {
    service: SERVICE,
    default_port: DEFAULT_PORT,
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
    ],
};

pub use auth::AdminAccount;

/// Users' own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `JWT_PRIVATE_KEY`: a PEM or a path; `None` keeps the key in the database.
    pub private_key: Option<String>,
    pub admin: Option<AdminAccount>,
    pub token_lifetime: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            private_key: None,
            admin: None,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

impl Settings {
    /// Reads `JWT_PRIVATE_KEY`, `CONVEYOR_ADMIN_EMAIL`, `CONVEYOR_ADMIN_PASSWORD` and
    /// `TOKEN_LIFETIME`.
    ///
    /// # Errors
    /// When only one of the admin variables is set, or the lifetime is out of range.
    pub fn from_env() -> Result<Self, ConfigError> {
        // Set but empty counts as unset (compose passes `${VARIABLE:-}` along).
        let set = |variable| {
            std::env::var(variable)
                .ok()
                .filter(|value| !value.is_empty())
        };
        let admin = match (set("CONVEYOR_ADMIN_EMAIL"), set("CONVEYOR_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => Some(AdminAccount { email, password }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "CONVEYOR_ADMIN_PASSWORD",
                    "",
                    "set together with CONVEYOR_ADMIN_EMAIL",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "CONVEYOR_ADMIN_EMAIL",
                    "",
                    "set together with CONVEYOR_ADMIN_PASSWORD",
                ));
            }
        };
        let seconds = platform::config::parse_env_within(
            "TOKEN_LIFETIME",
            60..=86_400,
            "a number of seconds from 60 to 86400",
        )?
        .unwrap_or(3600);
        Ok(Self {
            private_key: set("JWT_PRIVATE_KEY"),
            admin,
            token_lifetime: Duration::from_secs(seconds),
        })
    }
}

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig, settings: Settings) -> anyhow::Result<Service> {
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
        });
        // Replicas pick up a rotated key when it starts signing.
        let reloading = keys.clone();
        let reload: platform::BackgroundTask = Box::new(move |shutdown| {
            Box::pin(async move { reload_keys(&reloading, &shutdown).await })
        });
        // users checks tokens against its own keys, read from its database, not over HTTP.
        let verifier = Verifier::new(Arc::new(move || {
            let keys = keys.clone();
            Box::pin(async move { keys.published().await })
        }));
        Ok(ServiceParts {
            router: http::router(state.clone()).merge(auth::admin_router(auth.clone())),
            public: http::public_router(state).merge(auth::public_router(auth)),
            verifier: Some(verifier),
            consumer: None,
            background: vec![reload],
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

/// Runs the service until `shutdown` fires.
///
/// # Errors
/// As [`build`], or when the HTTP server fails.
pub async fn run(
    config: ServiceConfig,
    settings: Settings,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    build(config, settings).await?.run(shutdown).await
}
