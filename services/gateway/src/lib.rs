//! The API gateway: one entrance under `/api/` that checks every token before anything
//! reaches a service (never failing open), limits each client's request rate, routes to the
//! services, and aggregates a user's summary behind circuit breakers.
//!
//! # Layout
//!
//! - `path`: a request's path decoded and checked once, before anything else reads it.
//! - `routes`: where each path goes, and which requests need no token, read from the route
//!   tables of the services it is given: a route without a row is not published.
//! - `proxy`: a request sent on, with the client's address vouched for by
//!   `GATEWAY_FORWARD_SECRET`, and its answer back.
//! - `limit`: token buckets per client and route class.
//! - `breaker`: a circuit breaker per upstream.
//! - `summary`: `GET /api/users/{id}/summary`, degraded rather than late.
//! - `ingest`: `POST /api/events`, events from producing systems outside AMQP.
//! - `openapi`: `GET /api/openapi.json`, the public OpenAPI document, made from the
//!   services' own documents and the gateway's routes.
//! - `settings`: what the environment says.

mod breaker;
mod ingest;
mod limit;
mod openapi;
pub mod path;
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
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use conveyor::Shutdown;
use platform::auth::{self, Verifier};
use platform::routes::{gateway as own_routes, operations};
use platform::{ApiError, Caller};
use tokio::net::TcpListener;
use tracing::Instrument;

pub use breaker::BreakerSettings;
pub use limit::RateSettings;
pub use openapi::{own_document, public_document};
pub use settings::{DEFAULT_PORT, SETTINGS, Settings, gateway_settings};

use crate::ingest::Ingest;
use crate::limit::Limits;
use crate::openapi::Documents;
use crate::path::NormalPath;
use crate::routes::{NoRoute, RouteClass, RouteTable};
use crate::summary::Aggregator;

/// The services' base URLs (several instances of a service take turns), one pooled HTTP
/// client for all, and what proves to users that a request comes from the gateway.
pub(crate) struct Upstreams {
    urls: BTreeMap<String, Vec<String>>,
    turn: AtomicUsize,
    client: reqwest::Client,
    /// `X-Conveyor-Gateway`'s value (`GATEWAY_FORWARD_SECRET`), sent with every request
    /// passed on; see [`proxy`].
    forward_mark: Option<HeaderValue>,
}

impl Upstreams {
    /// `urls` as the settings give them: one URL per service, or several separated by commas.
    fn new(
        urls: &BTreeMap<String, String>,
        client: reqwest::Client,
        forward_mark: Option<HeaderValue>,
    ) -> Self {
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
            forward_mark,
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
    table: RouteTable,
    upstreams: Upstreams,
    verifier: Arc<Verifier>,
    limits: Limits,
    aggregator: Aggregator,
    ingest: Arc<Ingest>,
    documents: Documents,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A gateway with its port bound.
pub struct Gateway {
    listener: TcpListener,
    gate: Arc<Gate>,
}

impl Gateway {
    /// Binds the port, connects to its database (creating it if missing) and gets ready to
    /// verify tokens against users' published keys. What it sends on is marked with
    /// `GATEWAY_FORWARD_SECRET` when the environment sets it.
    ///
    /// # Errors
    /// When the services' tables conflict or lack one the gateway reads from, a service's
    /// URL is missing, the port is taken, the database fails, `GATEWAY_FORWARD_SECRET`
    /// cannot be used or a route of the gateway's is not described for its OpenAPI document.
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        let forward_secret = proxy::forward_secret_from_env();
        Self::bind_with_forward_secret(settings, forward_secret.as_deref()).await
    }

    /// As [`Gateway::bind`], with the secret that marks what it sends on as the gateway's
    /// (what `GATEWAY_FORWARD_SECRET` says; users must have the same) given here: users
    /// believes the client address the gateway forwards only with it.
    ///
    /// # Errors
    /// As [`Gateway::bind`].
    pub async fn bind_with_forward_secret(
        settings: Settings,
        forward_secret: Option<&str>,
    ) -> anyhow::Result<Self> {
        let forward_mark = forward_secret.map(proxy::forward_mark).transpose()?;
        check_services(&settings)?;
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
            settings.names,
            settings.event_id_retention,
        ));
        let upstreams = Upstreams::new(&settings.urls, client, forward_mark);
        let jwks = format!("{}{}", upstreams.url("users"), auth::JWKS_PATH);
        let gate = Arc::new(Gate {
            table: RouteTable::new(&settings.services),
            upstreams,
            verifier: Verifier::from_jwks_url(jwks),
            limits: Limits::new(&settings.rates),
            aggregator: Aggregator::new(settings.breaker, settings.summary_timeout),
            ingest,
            documents: Documents::new()?,
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
        let routes = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route(&own_routes::SUMMARY.api_path(), get(summary))
            .route(
                &own_routes::EVENTS.api_path(),
                axum::routing::post(ingest_event),
            )
            .route(&own_routes::OPENAPI.api_path(), get(public_api))
            .route(operations::OPENAPI.path, get(root_api))
            .fallback(pass_on)
            .with_state(self.gate.clone())
            .route("/metrics", get(platform::metrics::render))
            .layer(axum::middleware::from_fn_with_state(
                std::sync::Arc::<str>::from("gateway"),
                platform::metrics::track_http,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.gate.clone(),
                label_route,
            ));
        // The path is checked around the whole router, not as one of its layers: those run
        // after the router has matched the raw path. So nothing (routing, the metrics label,
        // the limiter, the token check, the proxy) reads a path that was not checked; only
        // the request's span, outermost, records the path as it came, refused or not.
        let router: Router = Router::new()
            .fallback_service(routes)
            .layer(axum::middleware::from_fn(check_path))
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

/// Refuses services the gateway cannot stand in front of: tables that conflict, no URL for
/// one, or none of a service the gateway itself reads from (users' keys, the summary's
/// sources).
fn check_services(settings: &Settings) -> anyhow::Result<()> {
    let conflicts = platform::routes::conflicts(&settings.services);
    anyhow::ensure!(
        conflicts.is_empty(),
        "the services' route tables conflict: {}",
        conflicts.join("; ")
    );
    for table in &settings.services {
        let service = table.service;
        anyhow::ensure!(
            settings.urls.contains_key(service),
            "no URL for the {service} service: set {}_URL",
            service.to_ascii_uppercase()
        );
    }
    for needed in summary::SOURCES {
        anyhow::ensure!(
            settings
                .services
                .iter()
                .any(|table| table.service == needed),
            "the gateway checks tokens with users' keys and reads summaries from {}, but was given no {needed} service",
            summary::SOURCES.join(", ")
        );
    }
    Ok(())
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

/// Refuses (400) a request whose path is not in its normal form (see [`path`]) before
/// anything else reads the path, and hands the others on with their [`NormalPath`], the one
/// reading of the path that routing, the rate limiter and the proxy use.
async fn check_path(mut request: Request, next: axum::middleware::Next) -> Response {
    match path::normalise(request.uri().path()) {
        Ok(normal) => {
            request.extensions_mut().insert(normal);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(%error, "A request's path was refused.");
            ApiError::bad_request(format!("the request path is refused: {error}")).into_response()
        }
    }
}

/// Every `/api/…` route but the summary: checked, limited, and sent on. The route, its rate
/// class and the path sent on all come from the [`NormalPath`] that [`check_path`] made; a
/// request without one (the check not run) is refused by the extractor, never passed on.
async fn pass_on(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client_address): ConnectInfo<SocketAddr>,
    Extension(path): Extension<NormalPath>,
    request: Request,
) -> Response {
    let route = match gate
        .table
        .route(request.method(), &path, request.uri().query())
    {
        Ok(route) => route,
        Err(NoRoute::Path) => {
            return ApiError::not_found(format!(
                "no route {}: the API is under /api/ ({})",
                path.as_str(),
                gate.table.prefixes().join(", ")
            ))
            .into_response();
        }
        Err(NoRoute::Method) => {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not a method of {}", request.method(), path.as_str()),
            )
            .into_response();
        }
    };
    let (class, open) = (route.class, route.open);
    if let Err(refusal) = admit(&gate, request.headers(), client_address, class, open).await {
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

/// `GET /api/users/{id}/summary`. Like [`pass_on`], it needs the [`NormalPath`] of
/// [`check_path`]: `{id}` is sent on inside the services' URLs.
async fn summary(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client_address): ConnectInfo<SocketAddr>,
    Extension(_checked): Extension<NormalPath>,
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

/// `GET /api/openapi.json`: checked and limited like every open read, then the public
/// document.
async fn public_api(
    State(gate): State<Arc<Gate>>,
    ConnectInfo(client_address): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let headers = request.headers();
    if let Err(refusal) = admit(&gate, headers, client_address, RouteClass::Read, true).await {
        return refusal;
    }
    gate.documents
        .public(&gate.upstreams, gate.table.tables())
        .await
}

/// `GET /openapi.json`: the public document at the root too, where every service answers
/// its own (for operators, like `/healthz`).
async fn root_api(State(gate): State<Arc<Gate>>) -> Response {
    gate.documents
        .public(&gate.upstreams, gate.table.tables())
        .await
}

/// Ready while serving; says which upstreams' breakers are open.
async fn ready(State(gate): State<Arc<Gate>>) -> impl IntoResponse {
    Json(serde_json::json!({ "ready": true, "breakers": gate.aggregator.breakers() }))
}

/// Names what the fallback passes on by its prefix for the request metrics, which would
/// otherwise see no route template.
async fn label_route(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: axum::middleware::Next,
) -> Response {
    let label = gate.table.metrics_label(request.uri().path());
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
