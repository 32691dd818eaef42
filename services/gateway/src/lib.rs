//! The API gateway: one entrance under `/api/` that checks every token before anything
//! reaches a service (never failing open), limits each client's request rate, routes to the
//! services, and aggregates a user's summary behind circuit breakers.
//!
//! # Layout
//!
//! - `routes`: where each path goes, and which requests need no token.
//! - `proxy`: a request sent on and its answer back.
//! - `limit`: token buckets per client and route class.
//! - `breaker`: a circuit breaker per upstream.
//! - `summary`: `GET /api/users/{id}/summary`, degraded rather than late.
//! - `ingest`: `POST /api/events`, events from producing systems outside AMQP.
//! - `settings`: what the environment says.

mod breaker;
mod ingest;
mod limit;
mod proxy;
pub mod routes;
mod settings;
mod summary;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use conveyor::Shutdown;
use platform::auth::{self, Verifier};
use platform::{ApiError, Caller};
use tokio::net::TcpListener;
use tracing::Instrument;

pub use breaker::BreakerSettings;
pub use limit::RateSettings;
pub use settings::{DEFAULT_PORT, SETTINGS, Settings};

use crate::ingest::Ingest;
use crate::limit::Limits;
use crate::routes::RouteClass;
use crate::summary::Aggregator;

/// The services' base URLs (several instances of a service take turns) and one pooled
/// HTTP client for all.
pub(crate) struct Upstreams {
    urls: BTreeMap<String, Vec<String>>,
    turn: AtomicUsize,
    client: reqwest::Client,
}

impl Upstreams {
    /// `urls` as the settings give them: one URL per service, or several separated by commas.
    fn new(urls: &BTreeMap<String, String>, client: reqwest::Client) -> Self {
        let urls = urls
            .iter()
            .map(|(service, list)| {
                let instances = list
                    .split(',')
                    .map(|url| url.trim().trim_end_matches('/').to_owned())
                    .filter(|url| !url.is_empty())
                    .collect();
                (service.clone(), instances)
            })
            .collect();
        Self {
            urls,
            turn: AtomicUsize::new(0),
            client,
        }
    }

    /// The base URL of the instance of `service` whose turn it is.
    fn url(&self, service: &str) -> &str {
        match self.urls.get(service) {
            Some(instances) if !instances.is_empty() => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                &instances[turn % instances.len()]
            }
            _ => "",
        }
    }
}

struct Gate {
    upstreams: Upstreams,
    verifier: Arc<Verifier>,
    limits: Limits,
    aggregator: Aggregator,
    ingest: Arc<Ingest>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A gateway with its port bound.
pub struct Gateway {
    listener: TcpListener,
    gate: Arc<Gate>,
}

impl Gateway {
    /// Binds the port, connects to its database (creating it if missing) and gets ready to
    /// verify tokens against users' published keys.
    ///
    /// # Errors
    /// When the port is taken, a service's URL is missing or the database fails.
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        for service in routes::UPSTREAMS {
            anyhow::ensure!(
                settings.urls.contains_key(service),
                "no URL for the {service} service: set {}_URL",
                service.to_ascii_uppercase()
            );
        }
        let listener = TcpListener::bind((settings.listen_addr, settings.port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}:{} for the gateway: is the port taken? Set GATEWAY_PORT",
                    settings.listen_addr, settings.port
                )
            })?;
        let client = reqwest::Client::builder()
            .timeout(settings.upstream_timeout)
            .pool_max_idle_per_host(256)
            .build()?;
        let pool = platform::connect_or_create(&settings.database_url, 4).await?;
        MIGRATOR
            .run(&pool)
            .await
            .context("the gateway database's migrations failed")?;
        let ingest = Arc::new(Ingest::new(
            pool,
            settings.amqp,
            settings.event_id_retention,
        ));
        let upstreams = Upstreams::new(&settings.urls, client);
        let jwks = format!("{}{}", upstreams.url("users"), auth::JWKS_PATH);
        let gate = Arc::new(Gate {
            upstreams,
            verifier: Verifier::from_jwks_url(jwks),
            limits: Limits::new(&settings.rates),
            aggregator: Aggregator::new(settings.breaker, settings.summary_timeout),
            ingest,
        });
        Ok(Self { listener, gate })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` fires; requests in hand finish.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/api/users/{id}/summary", get(summary))
            .route("/api/events", axum::routing::post(ingest_event))
            .fallback(pass_on)
            .with_state(self.gate.clone())
            .route("/metrics", get(platform::metrics::render))
            .layer(axum::middleware::from_fn_with_state(
                std::sync::Arc::<str>::from("gateway"),
                platform::metrics::track_http,
            ))
            .layer(axum::middleware::from_fn(label_route))
            .layer(axum::middleware::from_fn(request_span));
        let forgetting = tokio::spawn(forget_idle_clients(self.gate.clone(), shutdown.clone()));
        let purging = tokio::spawn(self.gate.ingest.clone().purge_old(shutdown.clone()));
        tracing::info!(port = self.port(), "Gateway started.");
        let served = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.fired().await })
        .await;
        forgetting.abort();
        purging.abort();
        tracing::info!("Gateway stopped.");
        served.context("the gateway's HTTP server failed")
    }
}

async fn forget_idle_clients(gate: Arc<Gate>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => gate.limits.forget_idle(),
            () = shutdown.fired() => return,
        }
    }
}

/// Lets a request in, or answers for it: 401 for a missing or bad token (open routes may
/// come without one), 429 with `Retry-After` when the client is over its rate.
async fn admit(
    gate: &Gate,
    headers: &HeaderMap,
    client_address: SocketAddr,
    class: RouteClass,
    open: bool,
) -> Result<Option<Caller>, Response> {
    let caller = match auth::bearer_token(headers) {
        Ok(None) if open => None,
        Ok(None) => return Err(auth::refusal(&auth::AuthError::Missing)),
        Ok(Some(token)) => match gate.verifier.verify(&token).await {
            Ok(caller) => Some(caller),
            Err(error) => {
                // Refused tokens count against the address: guessing is limited too.
                let address = client_address.ip().to_string();
                if let Err(wait) = gate.limits.check(class, &address) {
                    return Err(too_many(class, wait));
                }
                return Err(auth::refusal(&error));
            }
        },
        Err(error) => return Err(auth::refusal(&error)),
    };
    let client = caller.as_ref().map_or_else(
        || client_address.ip().to_string(),
        |caller| caller.subject().to_owned(),
    );
    if let Err(wait) = gate.limits.check(class, &client) {
        return Err(too_many(class, wait));
    }
    Ok(caller)
}

/// 429, with the whole seconds to wait in `Retry-After`.
fn too_many(class: RouteClass, wait: Duration) -> Response {
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "too many {} requests from this client; try again in {seconds} s",
            class.as_str()
        ),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Every `/api/…` route but the summary: checked, limited, and sent on.
async fn pass_on(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client_address): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let Some(route) = routes::route(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    ) else {
        return ApiError::not_found(format!(
            "no route {}: the API is under /api/ (auth, users, orders, products, payments, shipments)",
            request.uri().path()
        ))
        .into_response();
    };
    let open = routes::is_open(request.method(), request.uri().path());
    if let Err(refusal) = admit(&gate, request.headers(), client_address, route.class, open).await {
        return refusal;
    }
    proxy::forward(
        &gate.upstreams,
        route.service,
        &route.upstream_path,
        client_address.ip(),
        request,
    )
    .await
}

async fn summary(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client_address): ConnectInfo<SocketAddr>,
    Path(user): Path<String>,
    request: Request,
) -> Response {
    if let Err(refusal) = admit(
        &gate,
        request.headers(),
        client_address,
        RouteClass::Read,
        false,
    )
    .await
    {
        return refusal;
    }
    let Some(authorization) = request.headers().get(header::AUTHORIZATION) else {
        return auth::refusal(&auth::AuthError::Missing);
    };
    gate.aggregator
        .summary(&gate.upstreams, &user, authorization)
        .await
}

/// `POST /api/events`: checked and limited like every write, then taken by [`Ingest`].
async fn ingest_event(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client_address): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let caller = match admit(
        &gate,
        request.headers(),
        client_address,
        RouteClass::Write,
        false,
    )
    .await
    {
        Ok(Some(caller)) => caller,
        Ok(None) => return auth::refusal(&auth::AuthError::Missing),
        Err(refusal) => return refusal,
    };
    let body = match axum::body::to_bytes(request.into_body(), ingest::MAX_EVENT_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an event is at most {} bytes", ingest::MAX_EVENT_BYTES),
            )
            .into_response();
        }
    };
    gate.ingest.accept(&caller, &body).await
}

/// Ready while serving; says which upstreams' breakers are open.
async fn ready(State(gate): State<Arc<Gate>>) -> impl IntoResponse {
    Json(serde_json::json!({ "ready": true, "breakers": gate.aggregator.breakers() }))
}

/// Names what the fallback passes on by its prefix for the request metrics, which would
/// otherwise see no route template.
async fn label_route(mut request: Request, next: axum::middleware::Next) -> Response {
    let label = routes::metrics_label(request.uri().path());
    request
        .extensions_mut()
        .insert(platform::metrics::RouteLabel(label));
    next.run(request).await
}

/// Runs each request in a span that continues the caller's `traceparent`, if it sends one;
/// what the gateway sends on carries this span, so the services' spans are its children.
async fn request_span(request: Request, next: axum::middleware::Next) -> Response {
    let span = tracing::info_span!(
        "gateway request",
        service = "gateway",
        method = %request.method(),
        path = %request.uri().path(),
        otel.kind = "server",
    );
    platform::continue_http_trace(&span, request.headers());
    next.run(request).instrument(span).await
}
