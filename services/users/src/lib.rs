//! The users service: registers users, changes and deactivates them, and publishes every
//! change (`user.registered`, `user.updated`, `user.deactivated`) with a version that grows
//! by one, so other services keep cached copies that never go backwards.
//!
//! # Layout
//!
//! - `http`: the API (`POST /users`, `GET` and `PATCH /users/{id}`, `POST /users/{id}/deactivate`).
//! - `user`: the user row, its validation and its events.

mod http;
mod user;

use std::sync::Arc;

use conveyor::{Outbox, Shutdown};
use platform::{Service, ServiceConfig, ServiceParts};
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
    settings: &[],
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {
    let contract = events_schema::EventContract::shared()?;
    Service::build(config, &MIGRATOR, |pool| {
        let state = Arc::new(http::AppState {
            pool: pool.clone(),
            outbox: Outbox::new().with_contract(contract),
        });
        Ok(ServiceParts {
            router: http::router(state),
            consumer: None,
            background: Vec::new(),
        })
    })
    .await
}

/// Runs the service until `shutdown` fires.
///
/// # Errors
/// As [`build`], or when the HTTP server fails.
pub async fn run(config: ServiceConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    build(config).await?.run(shutdown).await
}
