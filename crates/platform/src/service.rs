//! Runs one service: its HTTP API (with `/healthz` and `/readyz`), its consumer, its outbox
//! relay and its background tasks, all stopped by one shutdown. `build` binds first, so
//! tests ask for port 0 and read the port back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use conveyor::{Consumer, ConsumerStats, OutboxRelay, RelayOptions, Shutdown};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinError;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::{self, Verifier};
use crate::config::ServiceConfig;
use crate::database::connect_or_create;
use crate::routes::operations;
use crate::tasks::NamedTasks;

/// A long-running task of a service, stopped by the shutdown it is given.
pub type BackgroundTask =
    Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What a service brings: its routes (with their state applied), its consumer, its tasks.
pub struct ServiceParts {
    /// Routes reachable only with a valid token: the rows of the service's table that are
    /// not open, as [`crate::routes::Routes::finish`] makes them.
    pub router: Router,
    /// Routes open to anyone (a token, if sent, must still be valid): the open rows.
    pub public: Router,
    /// Checks tokens; by default against the keys published by users at `USERS_URL`.
    pub verifier: Option<Arc<Verifier>>,
    pub consumer: Option<Consumer>,
    pub background: Vec<BackgroundTask>,
    /// The service's OpenAPI document ([`crate::openapi::Api::finish`]), served at
    /// `GET /openapi.json`.
    pub openapi: serde_json::Value,
}

/// A service ready to run: database migrated, port bound.
pub struct Service {
    config: ServiceConfig,
    pool: PgPool,
    listener: TcpListener,
    parts: ServiceParts,
}

impl Service {
    /// Connects to the service's database (creating it if missing), applies its migrations
    /// and the runtime's tables, binds its port, and assembles its parts.
    ///
    /// # Errors
    /// When the database is unreachable, a migration fails or the port is taken.
    pub async fn build(
        config: ServiceConfig,
        migrator: &'static Migrator,
        assemble: impl FnOnce(&PgPool) -> anyhow::Result<ServiceParts>,
    ) -> anyhow::Result<Self> {
        let pool = connect_or_create(&config.database_url, config.pool_size).await?;
        crate::migrate(&pool, migrator)
            .await
            .with_context(|| format!("the {} database's migrations failed", config.service))?;
        conveyor::install(&pool).await?;
        let address = (config.listen_addr, config.port);
        let listener = TcpListener::bind(address).await.with_context(|| {
            format!(
                "cannot listen on {}:{} for {}: is the port taken? Set {}_PORT",
                config.listen_addr,
                config.port,
                config.service,
                config.service.to_ascii_uppercase()
            )
        })?;
        let parts = assemble(&pool)?;
        Ok(Self {
            config,
            pool,
            listener,
            parts,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or_default()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` fires, then stops taking requests and deliveries, finishes
    /// what is in hand, flushes the outbox and returns, all within the configured
    /// `shutdown_timeout`. A part that ends before the shutdown (the HTTP server failing)
    /// stops the others, and its error is returned.
    ///
    /// # Errors
    /// When a part of the service failed or stopped unexpectedly.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let service = self.config.service.clone();
        let budget = self.config.shutdown_timeout;
        // The relay stops last, on a signal of its own: what HTTP requests and the consumer's
        // last batch wrote to the outbox is in its final flush.
        let relay_budget = (budget / 2).min(RELAY_FLUSH_AT_MOST);
        let relay = OutboxRelay::new(
            self.pool.clone(),
            self.config.amqp.clone(),
            self.config.names.clone(),
        )
        .with_options(RelayOptions {
            // Its last batches' confirms need the rest of the relay's share.
            flush_timeout: relay_budget * 4 / 5,
            ..RelayOptions::default()
        });
        let (stop_relay, relay_shutdown) = Shutdown::new();
        let mut relay = tokio::spawn(relay.run(relay_shutdown));
        // The parts stop on their own signal: the caller's, or one of them ending early.
        let (stop_parts, stopping) = Shutdown::new();
        let mut parts = self.spawn_parts(stopping);
        let mut failure = None;
        tokio::select! {
            () = shutdown.fired() => {}
            Some((part, ended)) = parts.join_next() => {
                failure = Some(ended_early(&part, ended));
            }
        }
        stop_parts.fire();
        let deadline = Instant::now() + budget;
        tracing::info!(service = %service, "Stopping: no new requests or deliveries; finishing those in hand.");
        let given_up = parts
            .join_until(deadline - relay_budget, |part, ended| {
                if let Some(error) = failed(&part, ended) {
                    failure.get_or_insert(error);
                }
            })
            .await;
        if !given_up.is_empty() {
            tracing::warn!(service = %service, parts = ?given_up, budget_s = budget.as_secs_f64(),
                "Gave up waiting for these parts to stop; their unacknowledged deliveries return to the queue.");
        }
        stop_relay.fire();
        match tokio::time::timeout_at(deadline, &mut relay).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "The outbox relay ended abnormally."),
            Err(_) => {
                // Ending it closes its leader lock's session, so the next start takes over.
                relay.abort();
                tracing::warn!(service = %service,
                    "The outbox's last flush did not finish in time; its unsent rows go out at the next start.");
            }
        }
        tracing::info!(service = %service, "Service stopped.");
        failure.map_or(Ok(()), Err)
    }

    /// Starts the HTTP server, the consumer, the metrics sampler and the background tasks,
    /// each stopping when `stopping` fires.
    fn spawn_parts(self, stopping: Shutdown) -> NamedTasks<anyhow::Result<()>> {
        let Self {
            config,
            pool,
            listener,
            parts,
        } = self;
        let mut tasks = NamedTasks::default();
        let consumer_stats = parts.consumer.as_ref().map(Consumer::stats);
        let sampled = crate::metrics::Sampled {
            service: config.service.clone(),
            pool: pool.clone(),
            queue: parts
                .consumer
                .as_ref()
                .map(|consumer| crate::metrics::SampledQueue {
                    amqp: config.amqp.clone(),
                    name: config.names.service_queue(&config.service),
                    consumer: consumer.stats(),
                }),
        };
        tasks.spawn(
            "metrics sampler",
            ends_well(crate::metrics::sample(sampled, stopping.clone())),
        );
        if let Some(mut consumer) = parts.consumer {
            if let Some(workers) = config.consumer_workers {
                consumer.set_workers(workers);
            }
            let consuming = consumer.run(config.amqp.clone(), pool.clone(), stopping.clone());
            tasks.spawn("consumer", ends_well(consuming));
        }
        for (index, task) in parts.background.into_iter().enumerate() {
            tasks.spawn(
                format!("background task {}", index + 1),
                ends_well(task(stopping.clone())),
            );
        }
        let router = http_router(
            &config,
            pool,
            consumer_stats,
            parts.router,
            parts.public,
            parts.verifier,
        )
        .merge(openapi_route(parts.openapi));
        match listener.local_addr() {
            Ok(address) => {
                tracing::info!(service = %config.service, port = address.port(), "Service started.");
            }
            Err(error) => {
                tracing::warn!(service = %config.service, %error, "Service started; its port is unknown.")
            }
        }
        tasks.spawn("HTTP server", async move {
            // Handlers may read the peer's address (users counts failed sign-ins by it).
            let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopping.fired().await })
                .await
                .context("the HTTP server failed")
        });
        tasks
    }
}

/// The longest share of the shutdown budget the outbox's last flush takes.
const RELAY_FLUSH_AT_MOST: Duration = Duration::from_secs(10);

/// A part that cannot fail, as one that ends well.
async fn ends_well(part: impl Future<Output = ()>) -> anyhow::Result<()> {
    part.await;
    Ok(())
}

/// Why a part that ended before the shutdown was asked for stops the service.
fn ended_early(part: &str, ended: Result<anyhow::Result<()>, JoinError>) -> anyhow::Error {
    failed(part, ended)
        .unwrap_or_else(|| anyhow::anyhow!("the {part} stopped unexpectedly; stopping the service"))
}

/// The error a part ended with, if it did not end well.
fn failed(part: &str, ended: Result<anyhow::Result<()>, JoinError>) -> Option<anyhow::Error> {
    match ended {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.context(format!("the {part} failed"))),
        Err(panic) => Some(anyhow::anyhow!("the {part} panicked: {panic}")),
    }
}

/// The service's routes behind authentication, HTTP slots, metrics and request spans,
/// beside the health, readiness and metrics endpoints.
fn http_router(
    config: &ServiceConfig,
    pool: PgPool,
    consumer: Option<Arc<ConsumerStats>>,
    router: Router,
    public: Router,
    verifier: Option<Arc<Verifier>>,
) -> Router {
    let health = Arc::new(Health { pool, consumer });
    let verifier = verifier.unwrap_or_else(|| {
        Verifier::from_jwks_url(format!("{}{}", config.users_url, auth::JWKS_PATH))
    });
    let http_slots = Arc::new(Semaphore::new(config.http_concurrency() as usize));
    // The label of the request metrics and the request spans.
    let service_name: Arc<str> = Arc::from(config.service.as_str());
    router
        .layer(axum::middleware::from_fn_with_state(
            verifier.clone(),
            auth::require_token,
        ))
        .merge(public.layer(axum::middleware::from_fn_with_state(
            verifier,
            auth::accept_token,
        )))
        .layer(axum::middleware::from_fn_with_state(http_slots, http_slot))
        .merge(
            Router::new()
                .route(operations::HEALTH.path, get(|| async { "ok" }))
                .route(operations::READY.path, get(ready))
                .with_state(health),
        )
        .route(operations::METRICS.path, get(crate::metrics::render))
        .layer(axum::middleware::from_fn_with_state(
            service_name.clone(),
            crate::metrics::track_http,
        ))
        .layer(axum::middleware::from_fn_with_state(
            service_name,
            request_span,
        ))
}

/// `GET /openapi.json`: the service's document, open like the health routes and outside the
/// HTTP slots (it is written once, at start).
fn openapi_route(document: serde_json::Value) -> Router {
    let document = Arc::new(document);
    let serve = move || {
        let document = document.clone();
        async move { axum::Json(serde_json::Value::clone(&document)) }
    };
    Router::new().route(operations::OPENAPI.path, get(serve))
}

/// How long a request waits for one of the service's HTTP slots before it is told to try
/// again: a client's retry is cheaper than a queue of requests each holding memory.
const HTTP_SLOT_WAIT: Duration = Duration::from_secs(5);

/// Lets at most `http_concurrency` requests work at once. Each uses at most one database
/// connection at a time, so the rest of the pool is always left to the consumer, the relay
/// and the tasks: slow or heavy requests never stall the saga (they would hold every
/// connection, the consumer would wait and the deadline would run).
async fn http_slot(
    State(slots): State<Arc<Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(HTTP_SLOT_WAIT, slots.acquire_owned()).await {
        Ok(Ok(_slot)) => next.run(request).await,
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            axum::Json(serde_json::json!({
                "error": "the service is busy with other requests; try again shortly"
            })),
        )
            .into_response(),
    }
}

/// Runs each request in its own span, so the events it writes start a trace, or continue
/// the caller's when it sends a W3C `traceparent`; says at debug level how it ended.
async fn request_span(
    State(service): State<Arc<str>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let span = tracing::info_span!(
        "request",
        service = %service,
        method = %request.method(),
        path = %request.uri().path(),
        otel.kind = "server",
    );
    crate::trace_context::continue_http_trace(&span, request.headers());
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "Request answered."
        );
    });
    response
}

struct Health {
    pool: PgPool,
    consumer: Option<Arc<ConsumerStats>>,
}

/// The body of `/readyz`, and the schema the OpenAPI documents give it.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct Readiness {
    /// Both connections are up.
    ready: bool,
    /// The database answers.
    database: bool,
    /// The consumer holds a broker session (always true for a service without one).
    broker: bool,
}

/// Ready when the database answers and the consumer (if any) holds a broker session.
async fn ready(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let ping = sqlx::query("SELECT 1").execute(&health.pool);
    let database = matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(_))
    );
    let broker = health
        .consumer
        .as_ref()
        .is_none_or(|stats| stats.is_connected());
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready: database && broker,
        database,
        broker,
    };
    (status, axum::Json(body))
}
