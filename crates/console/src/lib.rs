//! The operators' console: the dead-letter workflow and each service's queues in a browser,
//! served by axum from the same engine as the `conveyor` CLI (`conveyor::dead_letter`, the
//! broker's management API), with no store of its own.
//!
//! Pages are rendered on the server and read whole without JavaScript; a small script of
//! the console's own keeps figures live and streams scans over server-sent events. Only an
//! admin or a user granted the `operator` scope signs in (see `session`).
//!
//! # Layout
//!
//! - `settings`: where it listens and what it reads.
//! - `session`: signing in with users' tokens, the cookie, CSRF and origin checks.
//! - `broker`: each service's queues as the broker counts them.
//! - `filters`: the dead-letter filters of a query string.
//! - `live`: live figures over server-sent events.
//! - `pages`: the pages (overview, dead letters, scans, audit, sign-in) and their layout.

mod broker;
mod filters;
mod live;
mod pages;
mod session;
mod settings;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use conveyor::{AmqpConfig, Names, Shutdown};
use platform::auth::{JWKS_PATH, Verifier};
use system::management::ManagementApi;
use tokio::net::TcpListener;

pub use settings::{ConsoleSettings, DEFAULT_PORT};

/// What every page reads.
pub(crate) struct AppState {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) users_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) management: ManagementApi,
    pub(crate) amqp: AmqpConfig,
    pub(crate) names: Names,
    pub(crate) shutdown: Shutdown,
}

impl session::HasVerifier for Arc<AppState> {
    fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }
}

/// The console, bound to its port.
pub struct Console {
    listener: TcpListener,
    settings: ConsoleSettings,
}

impl Console {
    /// Binds the console's port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn bind(settings: ConsoleSettings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.listen_addr, settings.port))
            .await
            .with_context(|| {
                format!(
                    "the console cannot listen on {}:{}: is the port taken? Set CONSOLE_PORT",
                    settings.listen_addr, settings.port
                )
            })?;
        Ok(Self { listener, settings })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` fires; live streams end then, so the stop waits for none.
    ///
    /// # Errors
    /// When the management API's URL cannot work, or the server fails.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let settings = self.settings;
        let state = Arc::new(AppState {
            verifier: Verifier::from_jwks_url(format!("{}{JWKS_PATH}", settings.users_url)),
            users_url: settings.users_url.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            management: ManagementApi::for_broker(&settings.amqp.url())?,
            amqp: settings.amqp.clone(),
            names: settings.names.clone(),
            shutdown: shutdown.clone(),
        });
        let served = axum::serve(self.listener, router(state))
            .with_graceful_shutdown(async move { shutdown.fired().await })
            .await;
        tracing::info!("Console stopped.");
        served.context("the console's HTTP server failed")
    }
}

fn router(state: Arc<AppState>) -> Router {
    use pages::{audit, dead_letters, overview, scan, sign_in};
    Router::new()
        .route("/", get(overview::page))
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/{service}", get(dead_letters::service))
        .route(
            "/dead-letters/{service}/letters",
            get(dead_letters::letters),
        )
        .route("/dead-letters/{service}/scan", get(scan::scan))
        .route("/audit", get(audit::page))
        .route("/live/queues", get(live::queues))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/console.js", get(script))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    )
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
}
