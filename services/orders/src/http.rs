//! The order API, decided from the cached copies alone (no call to users or inventory).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use conveyor::Outbox;
use events_schema::orders::{CancelReason, OrderCreatedV1, PricedItem};
use platform::{ApiError, ApiResult, JsonBody, parse_uuid};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::order::{self, Order, order_event};

pub(crate) struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    pub(crate) saga_timeout: Duration,
}

type AppResult = ApiResult<(StatusCode, Json<Value>)>;

const MAX_ITEMS: usize = 100;
const MAX_QUANTITY: i32 = 1000;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/orders", post(place).get(list))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/cache/users/{id}", get(cached_user))
        .route("/cache/products/{sku}", get(cached_product))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct NewOrder {
    user_id: String,
    items: Vec<NewItem>,
}

#[derive(Debug, Deserialize)]
struct NewItem {
    sku: String,
    quantity: i32,
}

async fn find_by_key(pool: &PgPool, key: &str) -> ApiResult<Option<Order>> {
    Ok(
        sqlx::query_as::<_, Order>("SELECT * FROM orders WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

async fn place(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewOrder>,
) -> AppResult {
    let key = match headers.get("idempotency-key").map(|value| value.to_str()) {
        None => None,
        Some(Ok(key)) if !key.trim().is_empty() && key.len() <= 200 => Some(key.trim().to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "Idempotency-Key must be 1 to 200 visible characters",
            ));
        }
    };
    if let Some(key) = &key
        && let Some(existing) = find_by_key(&state.pool, key).await?
    {
        return Ok((StatusCode::OK, Json(existing.to_json())));
    }
    let user_id = Uuid::parse_str(&new.user_id)
        .map_err(|_| ApiError::unprocessable(format!("user_id {:?} is not a UUID", new.user_id)))?;
    if new.items.is_empty() || new.items.len() > MAX_ITEMS {
        return Err(ApiError::unprocessable(format!(
            "an order needs 1 to {MAX_ITEMS} items"
        )));
    }
    if let Some(item) = new
        .items
        .iter()
        .find(|item| !(1..=MAX_QUANTITY).contains(&item.quantity))
    {
        return Err(ApiError::unprocessable(format!(
            "quantity {} of {} is not between 1 and {MAX_QUANTITY}",
            item.quantity, item.sku
        )));
    }
    let active: Option<bool> =
        sqlx::query_scalar("SELECT active FROM users_cache WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&state.pool)
            .await?;
    match active {
        None => return Err(ApiError::unprocessable(format!("unknown user {user_id}"))),
        Some(false) => {
            return Err(ApiError::unprocessable(format!(
                "user {user_id} is deactivated"
            )));
        }
        Some(true) => {}
    }
    let skus: Vec<&str> = new.items.iter().map(|item| item.sku.as_str()).collect();
    let prices: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT sku, price_cents, currency FROM products_cache WHERE sku = ANY($1)")
            .bind(&skus)
            .fetch_all(&state.pool)
            .await?;
    let mut unknown: Vec<&str> = skus
        .iter()
        .copied()
        .filter(|sku| !prices.iter().any(|(known, ..)| known == sku))
        .collect();
    unknown.dedup();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "unknown sku {}",
            unknown.join(", ")
        )));
    }
    let currency = prices[0].2.clone();
    if prices.iter().any(|(_, _, other)| *other != currency) {
        return Err(ApiError::unprocessable(
            "the items are priced in different currencies",
        ));
    }
    let items: Vec<PricedItem> = new
        .items
        .iter()
        .map(|item| PricedItem {
            sku: item.sku.clone(),
            quantity: item.quantity,
            unit_price_cents: prices
                .iter()
                .find(|(sku, ..)| *sku == item.sku)
                .map_or(0, |(_, price, _)| *price),
        })
        .collect();
    let total_cents: i64 = items
        .iter()
        .map(|item| i64::from(item.quantity) * item.unit_price_cents)
        .sum();
    let order_id = Uuid::now_v7();
    let deadline =
        chrono::Utc::now() + chrono::Duration::from_std(state.saga_timeout).unwrap_or_default();
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query_as::<_, Order>(
        "INSERT INTO orders (id, user_id, status, items, total_cents, currency, idempotency_key, deadline_at)
         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
    )
    .bind(order_id)
    .bind(user_id)
    .bind(sqlx::types::Json(&items))
    .bind(total_cents)
    .bind(&currency)
    .bind(&key)
    .bind(deadline)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(placed) = inserted else {
        // The same key won a race with this request: answer with that order.
        drop(tx);
        let existing = match &key {
            Some(key) => find_by_key(&state.pool, key).await?,
            None => None,
        };
        return existing
            .map(|order| (StatusCode::OK, Json(order.to_json())))
            .ok_or_else(|| ApiError::conflict("the order could not be placed; try again"));
    };
    let created = OrderCreatedV1 {
        order_id,
        user_id,
        items,
        total_cents,
        currency,
    };
    state
        .outbox
        .add(&mut tx, &order_event(order_id, &created))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(placed.to_json())))
}

async fn show(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> AppResult {
    let id = parse_uuid(&id, "order")?;
    let order = sqlx::query_as::<_, Order>("SELECT * FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
    Ok((StatusCode::OK, Json(order.to_json())))
}

#[derive(Debug, Deserialize)]
struct OrderQuery {
    user_id: Option<String>,
    status: Option<String>,
}

async fn list(State(state): State<Arc<AppState>>, Query(query): Query<OrderQuery>) -> AppResult {
    let user_id = query
        .user_id
        .as_deref()
        .map(|id| parse_uuid(id, "user"))
        .transpose()?;
    if let Some(status) = &query.status
        && !["pending", "confirmed", "cancelled"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status {status:?} is not pending, confirmed or cancelled"
        )));
    }
    let orders: Vec<Order> = sqlx::query_as(
        "SELECT * FROM orders WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at LIMIT 10000",
    )
    .bind(user_id)
    .bind(&query.status)
    .fetch_all(&state.pool)
    .await?;
    let orders: Vec<Value> = orders.iter().map(Order::to_json).collect();
    Ok((StatusCode::OK, Json(json!({ "orders": orders }))))
}

async fn cancel(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> AppResult {
    let id = parse_uuid(&id, "order")?;
    let mut tx = state.pool.begin().await?;
    let cancelled = order::cancel(
        &mut tx,
        id,
        CancelReason::CustomerCancelled,
        "cancelled by the customer".to_owned(),
    )
    .await?;
    if let Some(cancelled) = cancelled {
        order::publish_cancelled(&state.outbox, &mut tx, &cancelled).await?;
        tx.commit().await?;
    } else {
        drop(tx);
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
        return Err(match status {
            None => ApiError::not_found(format!("no order {id}")),
            Some(status) => ApiError::conflict(format!(
                "order {id} is {status}; only pending orders can be cancelled"
            )),
        });
    }
    show(State(state), Path(id.to_string())).await
}

async fn cached_user(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> AppResult {
    let id = parse_uuid(&id, "user")?;
    let row: Option<(bool, i64)> =
        sqlx::query_as("SELECT active, version FROM users_cache WHERE user_id = $1")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    let (active, version) =
        row.ok_or_else(|| ApiError::not_found(format!("user {id} is not cached yet")))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "user_id": id, "active": active, "version": version })),
    ))
}

async fn cached_product(State(state): State<Arc<AppState>>, Path(sku): Path<String>) -> AppResult {
    let row: Option<(i64, String, i64)> =
        sqlx::query_as("SELECT price_cents, currency, version FROM products_cache WHERE sku = $1")
            .bind(&sku)
            .fetch_optional(&state.pool)
            .await?;
    let (price_cents, currency, version) =
        row.ok_or_else(|| ApiError::not_found(format!("product {sku} is not cached yet")))?;
    Ok((
        StatusCode::OK,
        Json(
            json!({ "sku": sku, "price_cents": price_cents, "currency": currency, "version": version }),
        ),
    ))
}
