//! `GET /payments?order_id=…` and the cached copy's `GET /cache/users/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use platform::openapi::{Api, Operation};
use platform::routes::{Routes, Verb};
use platform::{ApiError, ApiResult, Caller, parse_uuid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) struct AppState {
    pub(crate) pool: PgPool,
}

/// Each handler against its row of [`crate::ROUTES`], which says who may call it.
pub(crate) fn routes(state: Arc<AppState>) -> Routes {
    Routes::new(crate::ROUTES)
        .with_state(state)
        .on(Verb::Get, "/payments", list)
        .on(Verb::Get, "/cache/users/{id}", cached_user)
        .done()
}

/// What the payments API takes and answers, each against its row of [`crate::ROUTES`], for
/// the service's OpenAPI document.
pub(crate) fn api(described: Api) -> Api {
    described.on(Verb::Get, "/payments", listing()).on(
        Verb::Get,
        "/cache/users/{id}",
        cached_user_api(),
    )
}

fn listing() -> Operation {
    Operation::new("An order's payments")
        .query::<PaymentQuery>()
        .reply::<Payments>(
            StatusCode::OK,
            "The order's payments; none for someone else's order.",
        )
        .refusal(StatusCode::BAD_REQUEST, "No `order_id`.")
        .refusal(StatusCode::NOT_FOUND, "The `order_id` is not a UUID.")
}

fn cached_user_api() -> Operation {
    Operation::cached_user(
        "payments' cached copy of a user",
        "`user_id`, `credit_limit_cents`, `active` and `version`.",
    )
}

/// Whose payments.
#[derive(Debug, Deserialize, JsonSchema)]
struct PaymentQuery {
    /// The order's id.
    #[schemars(required)]
    #[schemars(extend("format" = "uuid"))]
    order_id: Option<String>,
}

/// An order's payments.
#[derive(Debug, Serialize, JsonSchema)]
struct Payments {
    payments: Vec<Payment>,
}

#[derive(Debug, sqlx::FromRow, Serialize, JsonSchema)]
struct Payment {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    amount_cents: i64,
    /// What closed returns gave back of it, in cents.
    returned_cents: i64,
    currency: String,
    status: String,
    reason: Option<String>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<PaymentQuery>,
) -> ApiResult<Json<Payments>> {
    let order_id = query
        .order_id
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("give ?order_id=<uuid>"))
        .and_then(|id| parse_uuid(id, "order"))?;
    let payments: Vec<Payment> = sqlx::query_as(
        "SELECT id, order_id, user_id, amount_cents, returned_cents, currency, status, reason FROM payments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_all(&state.pool)
    .await?;
    // Someone else's order lists as an order without payments.
    let payments: Vec<Payment> = payments
        .into_iter()
        .filter(|payment| caller.may_act_for(payment.user_id))
        .collect();
    Ok(Json(Payments { payments }))
}

async fn cached_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(platform::Scope::ADMIN)?;
    let id = parse_uuid(&id, "user")?;
    let row: Option<(Option<i64>, bool, i64)> = sqlx::query_as(
        "SELECT credit_limit_cents, active, version FROM users_cache WHERE user_id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let (credit_limit_cents, active, version) =
        row.ok_or_else(|| ApiError::not_found(format!("user {id} is not cached yet")))?;
    Ok(Json(
        json!({ "user_id": id, "credit_limit_cents": credit_limit_cents, "active": active, "version": version }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_router_serves_its_route_table_and_nothing_else() {
        let state = Arc::new(AppState {
            pool: platform::routes::probe_pool().unwrap(),
        });
        platform::routes::assert_serves(routes(state).finish(), crate::ROUTES).await;
    }
}
