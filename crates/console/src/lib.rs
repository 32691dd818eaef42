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
//! - `figures`: what the overview reads from the services' databases.
//! - `filters`: the dead-letter filters of a query string.
//! - `jobs`: gentle replays, resumed from the audit log when the console starts.
//! - `live`: live figures over server-sent events.
//! - `pages`: the pages (overview, dead letters, scans, audit, sign-in) and their layout.

mod broker;
mod figures;
mod filters;
mod jobs;
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

/// A count with thousands separated, as the pages show figures: 1,000,000.
#[must_use]
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// What every page reads.
pub(crate) struct AppState {
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) users_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) management: ManagementApi,
    pub(crate) amqp: AmqpConfig,
    pub(crate) names: Names,
    pub(crate) shutdown: Shutdown,
    pub(crate) jobs: jobs::Jobs,
    /// Each service's database URL, and a small pool on each one read so far.
    database_urls: std::collections::BTreeMap<String, String>,
    pools: std::sync::Mutex<std::collections::HashMap<String, sqlx::PgPool>>,
    service_urls: std::collections::BTreeMap<String, String>,
    /// Where a step's log lines and trace are shown, when set.
    pub(crate) logs_url: Option<String>,
    pub(crate) traces_url: Option<String>,
}

impl AppState {
    /// Where a flow's evidence is: every service's database and URL, and the broker.
    ///
    /// # Errors
    /// When a service's database URL cannot work.
    pub(crate) fn flow_sources(&self) -> Result<flows::trace::Sources, String> {
        let mut databases = std::collections::BTreeMap::new();
        let mut urls = std::collections::BTreeMap::new();
        for service in system::ServiceName::all() {
            let name = service.as_str();
            databases.insert(name, self.database(name)?);
            if let Some(url) = self.service_urls.get(name) {
                urls.insert(name, url.clone());
            }
        }
        Ok(flows::trace::Sources {
            databases,
            amqp: Some(self.amqp.clone()),
            names: self.names.clone(),
            urls,
        })
    }

    /// A small pool on `service`'s database (its inbox, outbox and flows' runs); connected
    /// when first used.
    ///
    /// # Errors
    /// When the console knows no database for `service`.
    pub(crate) fn database(&self, service: &str) -> Result<sqlx::PgPool, String> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pool) = pools.get(service) {
            return Ok(pool.clone());
        }
        let url = self.database_urls.get(service).ok_or_else(|| {
            format!(
                "the console knows no database of {service}: set {}_DATABASE_URL",
                service.to_ascii_uppercase()
            )
        })?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(|_| {
                format!(
                    "{}_DATABASE_URL is not a database URL",
                    service.to_ascii_uppercase()
                )
            })?;
        pools.insert(service.to_owned(), pool.clone());
        Ok(pool)
    }
}

impl session::HasVerifier for Arc<AppState> {
    fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    fn users(&self) -> (&reqwest::Client, &str) {
        (&self.http, &self.users_url)
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
            jobs: jobs::Jobs::default(),
            database_urls: settings.database_urls.clone(),
            pools: std::sync::Mutex::default(),
            service_urls: settings.service_urls.clone(),
            logs_url: settings.logs_url.clone(),
            traces_url: settings.traces_url.clone(),
        });
        tokio::spawn(jobs::resume_unfinished(state.clone()));
        let served = axum::serve(self.listener, router(state))
            .with_graceful_shutdown(async move { shutdown.fired().await })
            .await;
        tracing::info!("Console stopped.");
        served.context("the console's HTTP server failed")
    }
}

fn router(state: Arc<AppState>) -> Router {
    use pages::{
        audit, dead_letters, edit, flows, overview, replay, runbooks, scan, sign_in, transfer,
    };
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
        .route(
            "/dead-letters/{service}/letters/{id}/edit",
            get(edit::form).post(edit::submit),
        )
        .route(
            "/dead-letters/{service}/replay",
            get(replay::confirm).post(replay::start),
        )
        .route(
            "/dead-letters/{service}/{action}",
            get(transfer::confirm).post(transfer::start),
        )
        .route("/replays", get(replay::list))
        .route("/replays/{run_id}", get(replay::show))
        .route("/replays/{run_id}/{action}", post(replay::act))
        .route("/live/replays/{run_id}", get(replay::live))
        .route("/flows", get(flows::stuck))
        .route("/flows/{flow}/{id}", get(flows::timeline))
        .route("/audit", get(audit::page))
        .route("/runbooks", get(runbooks::page))
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
