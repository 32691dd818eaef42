//! `GET /shipments?order_id=…` and the cached copy's `GET /cache/users/{id}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use platform::{ApiError, ApiResult, Caller, parse_uuid};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) struct AppState {
    pub(crate) pool: PgPool,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/shipments", get(list))
        .route("/cache/users/{id}", get(cached_user))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct ShipmentQuery {
    order_id: Option<String>,
}

#[derive(Debug, sqlx::FromRow, serde::Serialize)]
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
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({ "shipments": shipments })))
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
