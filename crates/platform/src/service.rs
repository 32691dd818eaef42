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
use conveyor::{Consumer, ConsumerStats, OutboxRelay, Shutdown};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::auth::{self, Verifier};
use crate::config::ServiceConfig;
use crate::database::connect_or_create;

/// A long-running task of a service, stopped by the shutdown it is given.
pub type BackgroundTask =
    Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What a service brings: its routes (with their state applied), its consumer, its tasks.
pub struct ServiceParts {
    /// Routes reachable only with a valid token.
    pub router: Router,
    /// Routes open to anyone (a token, if sent, must still be valid).
    pub public: Router,
    /// Checks tokens; by default against the keys published by users at `USERS_URL`.
    pub verifier: Option<Arc<Verifier>>,
    pub consumer: Option<Consumer>,
    pub background: Vec<BackgroundTask>,
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
        migrator
            .run(&pool)
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
    /// what is in hand, flushes the outbox and returns.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            config,
            pool,
            listener,
            parts,
        } = self;
        let mut tasks = JoinSet::new();
        // The relay stops last, on a signal of its own: what HTTP requests and the consumer's
        // last batch wrote to the outbox is in its final flush.
        let (stop_relay, relay_shutdown) = Shutdown::new();
        let relay = OutboxRelay::new(pool.clone(), config.amqp.clone(), config.names.clone());
        let relay = tokio::spawn(relay.run(relay_shutdown));
        let consumer_stats = parts.consumer.as_ref().map(Consumer::stats);
        let sampled = crate::metrics::Sampled {
            service: config.service.clone(),
            pool: pool.clone(),
            queue: parts.consumer.as_ref().map(|_| {
                (
                    config.amqp.clone(),
                    config.names.service_queue(&config.service),
                )
            }),
        };
        tasks.spawn(crate::metrics::sample(sampled, shutdown.clone()));
        if let Some(mut consumer) = parts.consumer {
            if let Some(workers) = config.consumer_workers {
                consumer.set_workers(workers);
            }
            tasks.spawn(consumer.run(config.amqp.clone(), pool.clone(), shutdown.clone()));
        }
        for task in parts.background {
            tasks.spawn(task(shutdown.clone()));
        }
        let health = Arc::new(Health {
            pool,
            consumer: consumer_stats,
        });
        let verifier = parts.verifier.unwrap_or_else(|| {
            Verifier::from_jwks_url(format!("{}{}", config.users_url, auth::JWKS_PATH))
        });
        let http_slots = Arc::new(Semaphore::new(config.http_concurrency() as usize));
        // The label of the request metrics and the request spans.
        let service_name: Arc<str> = Arc::from(config.service.as_str());
        let router = parts
            .router
            .layer(axum::middleware::from_fn_with_state(
                verifier.clone(),
                auth::require_token,
            ))
            .merge(parts.public.layer(axum::middleware::from_fn_with_state(
                verifier,
                auth::accept_token,
            )))
            .layer(axum::middleware::from_fn_with_state(http_slots, http_slot))
            .merge(
                Router::new()
                    .route("/healthz", get(|| async { "ok" }))
                    .route("/readyz", get(ready))
                    .with_state(health),
            )
            .route("/metrics", get(crate::metrics::render))
            .layer(axum::middleware::from_fn_with_state(
                service_name.clone(),
                crate::metrics::track_http,
            ))
            .layer(axum::middleware::from_fn_with_state(
                service_name,
                request_span,
            ));
        tracing::info!(service = %config.service, port = listener.local_addr()?.port(), "Service started.");
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.fired().await })
            .await;
        while tasks.join_next().await.is_some() {}
        stop_relay.fire();
        if let Err(error) = relay.await {
            tracing::error!(%error, "The outbox relay ended abnormally.");
        }
        tracing::info!(service = %config.service, "Service stopped.");
        served.context("the HTTP server failed")
    }
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
    let body =
        serde_json::json!({ "ready": database && broker, "database": database, "broker": broker });
    (status, axum::Json(body))
}
