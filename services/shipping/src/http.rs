//! `GET /shipments?order_id=…` and the cached copy's `GET /cache/users/{id}`.

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
        .on(Verb::Get, "/shipments", list)
        .on(Verb::Get, "/cache/users/{id}", cached_user)
        .done()
}

/// What the shipping API takes and answers, each against its row of [`crate::ROUTES`], for
/// the service's OpenAPI document.
pub(crate) fn api(described: Api) -> Api {
    described.on(Verb::Get, "/shipments", listing()).on(
        Verb::Get,
        "/cache/users/{id}",
        cached_user_api(),
    )
}

fn listing() -> Operation {
    Operation::new("An order's shipments")
        .query::<ShipmentQuery>()
        .reply::<Shipments>(
            StatusCode::OK,
            "The order's shipments; none for someone else's order.",
        )
        .refusal(StatusCode::BAD_REQUEST, "No `order_id`.")
        .refusal(StatusCode::NOT_FOUND, "The `order_id` is not a UUID.")
}

fn cached_user_api() -> Operation {
    Operation::cached_user(
        "shipping's cached copy of a user",
        "`user_id`, `country`, `active` and `version`.",
    )
}

/// Whose shipments.
#[derive(Debug, Deserialize, JsonSchema)]
struct ShipmentQuery {
    /// The order's id.
    #[schemars(required)]
    #[schemars(extend("format" = "uuid"))]
    order_id: Option<String>,
}

/// An order's shipments.
#[derive(Debug, Serialize, JsonSchema)]
struct Shipments {
    shipments: Vec<Shipment>,
}

#[derive(Debug, sqlx::FromRow, Serialize, JsonSchema)]
struct Shipment {
    id: Uuid,
    order_id: Uuid,
    user_id: Uuid,
    country: String,
    status: String,
}

async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<ShipmentQuery>,
) -> ApiResult<Json<Shipments>> {
    let order_id = query
        .order_id
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("give ?order_id=<uuid>"))
        .and_then(|id| parse_uuid(id, "order"))?;
    let shipments: Vec<Shipment> = sqlx::query_as(
        "SELECT id, order_id, user_id, country, status FROM shipments WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_all(&state.pool)
    .await?;
    // Someone else's order lists as an order without shipments.
    let shipments: Vec<Shipment> = shipments
        .into_iter()
        .filter(|shipment| caller.may_act_for(shipment.user_id))
        .collect();
    Ok(Json(Shipments { shipments }))
}

async fn cached_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(platform::Scope::ADMIN)?;
    let id = parse_uuid(&id, "user")?;
    let row: Option<(Option<String>, bool, i64)> =
        sqlx::query_as("SELECT country, active, version FROM users_cache WHERE user_id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    let (country, active, version) =
        row.ok_or_else(|| ApiError::not_found(format!("user {id} is not cached yet")))?;
    Ok(Json(
        json!({ "user_id": id, "country": country, "active": active, "version": version }),
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
