//! `GET /api/users/{id}/summary`: the profile, the recent orders, and each order's payments
//! and shipments, fetched in parallel with the caller's own token (so each service still
//! decides what the caller may see). Every upstream is behind a circuit breaker and the
//! whole answer has one deadline: when a service is down, slow or its breaker open, the
//! answer still comes in time, with that part empty and the service named in `degraded`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use platform::openapi::{Operation, Param};
use serde_json::{Value, json};

use crate::Upstreams;
use crate::breaker::{Breaker, BreakerSettings};

/// The services a summary reads from, each behind its breaker; the gateway needs them all.
pub(crate) const SOURCES: [&str; 4] = ["users", "orders", "payments", "shipping"];

/// How many of the newest orders a summary shows.
const RECENT_ORDERS: usize = 10;

/// What the summary takes and answers, for the gateway's OpenAPI document.
pub(crate) fn described() -> Operation {
    Operation::new("A user's profile, newest orders, and their payments and shipments")
        .describe(
            "Fetched from the services in parallel with the caller's token, each behind a circuit breaker, within one deadline: what does not come in time is empty and its service named in `degraded`.",
        )
        .param(Param::uuid("id", "The user's id."))
        .reply_object(
            StatusCode::OK,
            "`user`, `orders` (the ten newest, each with `payments` and `shipments`) and `degraded`.",
        )
        .refusal(
            StatusCode::NOT_FOUND,
            "No such user, or someone else's: users' answer, passed on.",
        )
        .refusal(
            StatusCode::FORBIDDEN,
            "orders refused to list this user's orders: its answer, passed on.",
        )
}

pub(crate) struct Aggregator {
    breakers: BTreeMap<&'static str, Breaker>,
    timeout: Duration,
}

/// What one upstream call gave: an answer, or nothing in time.
type Fetched = Option<(StatusCode, Value)>;

impl Aggregator {
    pub(crate) fn new(breaker: BreakerSettings, timeout: Duration) -> Self {
        Self {
            breakers: SOURCES
                .iter()
                .map(|service| (*service, Breaker::new(service, breaker)))
                .collect(),
            timeout,
        }
    }

    /// Each upstream's breaker: `closed`, `open` or `half-open`.
    pub(crate) fn breakers(&self) -> BTreeMap<&'static str, &'static str> {
        self.breakers
            .iter()
            .map(|(service, breaker)| (*service, breaker.describe()))
            .collect()
    }

    /// A GET to `service` within `deadline`, through its breaker. A 5xx, an error or no
    /// answer in time counts as a failure; any other answer as a success.
    async fn fetch(
        &self,
        upstreams: &Upstreams,
        service: &'static str,
        path: String,
        authorization: &HeaderValue,
        deadline: Instant,
    ) -> Fetched {
        let breaker = &self.breakers[service];
        if !breaker.allow() {
            return None;
        }
        let call = async {
            let answer = upstreams
                .client
                .get(format!("{}{path}", upstreams.url(service)))
                .headers(platform::trace_headers())
                .header(header::AUTHORIZATION, authorization)
                .send()
                .await?;
            let status = answer.status();
            Ok::<_, reqwest::Error>((status, answer.json::<Value>().await?))
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, call).await {
            Ok(Ok((status, body))) if !status.is_server_error() => {
                breaker.record(true);
                Some((status, body))
            }
            _ => {
                breaker.record(false);
                None
            }
        }
    }

    /// The summary of `user`, or the error a service gave for it (a customer asking for
    /// someone else's gets users' 404).
    pub(crate) async fn summary(
        &self,
        upstreams: &Upstreams,
        user: &str,
        authorization: &HeaderValue,
    ) -> Response {
        let deadline = Instant::now() + self.timeout;
        let mut degraded = BTreeSet::new();
        let (profile, orders) = futures_util::join!(
            self.fetch(
                upstreams,
                "users",
                format!("/users/{user}"),
                authorization,
                deadline
            ),
            self.fetch(
                upstreams,
                "orders",
                format!("/orders?user_id={user}&limit={RECENT_ORDERS}"),
                authorization,
                deadline
            ),
        );
        let profile = match part(profile, "users", &mut degraded) {
            Ok(profile) => profile,
            Err(refusal) => return refusal.into_response(),
        };
        let orders = match part(orders, "orders", &mut degraded) {
            Ok(listing) => listing["orders"].as_array().cloned().unwrap_or_default(),
            Err(refusal) => return refusal.into_response(),
        };
        let details = join_all(orders.iter().map(|order| {
            let id = order["id"].as_str().unwrap_or_default().to_owned();
            async move {
                futures_util::join!(
                    self.fetch(
                        upstreams,
                        "payments",
                        format!("/payments?order_id={id}"),
                        authorization,
                        deadline
                    ),
                    self.fetch(
                        upstreams,
                        "shipping",
                        format!("/shipments?order_id={id}"),
                        authorization,
                        deadline
                    ),
                )
            }
        }))
        .await;
        let orders: Vec<Value> = orders
            .into_iter()
            .zip(details)
            .map(|(mut order, (payments, shipments))| {
                order["payments"] = listed(payments, "payments", "payments", &mut degraded);
                order["shipments"] = listed(shipments, "shipping", "shipments", &mut degraded);
                order
            })
            .collect();
        Json(json!({ "user": profile, "orders": orders, "degraded": degraded })).into_response()
    }
}

/// An upstream's answer as part of the summary: its body; `null` (and the service named as
/// degraded) when it gave none; its refusal, passed on, when it refused.
fn part(
    fetched: Fetched,
    service: &'static str,
    degraded: &mut BTreeSet<&'static str>,
) -> Result<Value, (StatusCode, Json<Value>)> {
    match fetched {
        Some((status, body)) if status.is_success() => Ok(body),
        Some((status, body)) => Err((status, Json(body))),
        None => {
            degraded.insert(service);
            Ok(Value::Null)
        }
    }
}

/// The list under `field` of an upstream's answer, or `[]` (degraded) without one.
fn listed(
    fetched: Fetched,
    service: &'static str,
    field: &str,
    degraded: &mut BTreeSet<&'static str>,
) -> Value {
    match fetched {
        Some((status, body)) if status.is_success() => body[field].clone(),
        _ => {
            degraded.insert(service);
            json!([])
        }
    }
}
