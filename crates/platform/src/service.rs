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
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::ServiceConfig;
use crate::database::{connect_or_create, http_pool};

/// A long-running task of a service, stopped by the shutdown it is given.
pub type BackgroundTask =
    Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A service's two connection pools on its database.
#[derive(Clone)]
pub struct Pools {
    /// For HTTP handlers only.
    pub http: PgPool,
    /// For the consumer, the outbox relay and background tasks.
    pub messaging: PgPool,
}

/// What a service brings: its routes (with their state applied), its consumer, its tasks.
pub struct ServiceParts {
    pub router: Router,
    pub consumer: Option<Consumer>,
    pub background: Vec<BackgroundTask>,
}

/// A service ready to run: database migrated, port bound.
pub struct Service {
    config: ServiceConfig,
    pools: Pools,
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
        assemble: impl FnOnce(&Pools) -> anyhow::Result<ServiceParts>,
    ) -> anyhow::Result<Self> {
        let (http_size, messaging_size) = config.pool_split();
        let pool = connect_or_create(&config.database_url, messaging_size).await?;
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
        let pools = Pools {
            http: http_pool(&pool, http_size),
            messaging: pool,
        };
        let parts = assemble(&pools)?;
        Ok(Self {
            config,
            pools,
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

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Serves until `shutdown` fires, then stops taking requests and deliveries, finishes
    /// what is in hand, flushes the outbox and returns.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            config,
            pools,
            listener,
            parts,
        } = self;
        let pool = pools.messaging;
        let mut tasks = JoinSet::new();
        // The relay stops last, on a signal of its own: what HTTP requests and the consumer's
        // last batch wrote to the outbox is in its final flush.
        let (stop_relay, relay_shutdown) = Shutdown::new();
        let relay = OutboxRelay::new(pool.clone(), config.amqp.clone(), config.names.clone());
        let relay = tokio::spawn(relay.run(relay_shutdown));
        let consumer_stats = parts.consumer.as_ref().map(Consumer::stats);
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
            pool: pools.http,
            consumer: consumer_stats,
        });
        let router = parts
            .router
            .merge(
                Router::new()
                    .route("/healthz", get(|| async { "ok" }))
                    .route("/readyz", get(ready))
                    .with_state(health),
            )
            .layer(axum::middleware::from_fn(request_span));
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

/// Runs each request in its own span, so the events it writes start a trace.
async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        otel.kind = "server",
    );
    next.run(request).instrument(span).await
}

struct Health {
    pool: PgPool,
    consumer: Option<Arc<ConsumerStats>>,
}

/// Ready when the database answers on the HTTP pool (a saturated one is a reason to send
/// requests elsewhere) and the consumer (if any) holds a broker session.
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
