//! The order API, decided from the cached copies alone (no call to users or inventory).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use conveyor::Outbox;
use events_schema::orders::{CancelReason, OrderCreatedV1};
use platform::openapi::{Api, Operation, Param, SKU};
use platform::routes::{Routes, Verb};
use platform::{ApiError, ApiResult, Caller, JsonBody, input, parse_uuid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::basket;
use crate::deadline;
use crate::order::{self, Order, OrderView, run_event};
use crate::returns;

/// The columns an `Order` reads, named rather than `*`: a statement prepared with `*` fails
/// ("cached plan must not change result type") on every pooled connection once a later
/// release, rolling out beside this one, adds a column to the table.
macro_rules! order_columns {
    () => {
        "id, user_id, status, reason, detail, items, total_cents, currency, created_at, finished_at"
    };
}

pub(crate) struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    pub(crate) saga_timeout: Duration,
    pub(crate) return_timeout: Duration,
    pub(crate) return_window: Duration,
}

type AppResult = ApiResult<(StatusCode, Json<Value>)>;

/// Each handler against its row of [`crate::ROUTES`], which says who may call it.
pub(crate) fn routes(state: Arc<AppState>) -> Routes {
    Routes::new(crate::ROUTES)
        .with_state(state)
        .on(Verb::Post, "/orders", place)
        .on(Verb::Get, "/orders", list)
        .on(Verb::Get, "/orders/{id}", show)
        .on(Verb::Post, "/orders/{id}/cancel", cancel)
        .on(Verb::Post, "/orders/{id}/returns", returns::http::request)
        .on(Verb::Get, "/returns/{id}", returns::http::show)
        .on(Verb::Post, "/returns/{id}/cancel", returns::http::cancel)
        .on(Verb::Get, "/cache/users/{id}", cached_user)
        .on(Verb::Get, "/cache/products/{sku}", cached_product)
        .done()
}

/// What the order API takes and answers, each against its row of [`crate::ROUTES`], for
/// the service's OpenAPI document.
pub(crate) fn api(described: Api) -> Api {
    described
        .on(Verb::Post, "/orders", placing())
        .on(Verb::Get, "/orders", listing())
        .on(Verb::Get, "/orders/{id}", showing())
        .on(Verb::Post, "/orders/{id}/cancel", cancelling())
        .on(
            Verb::Post,
            "/orders/{id}/returns",
            returns::http::requesting(),
        )
        .on(Verb::Get, "/returns/{id}", returns::http::showing())
        .on(
            Verb::Post,
            "/returns/{id}/cancel",
            returns::http::cancelling(),
        )
        .on(Verb::Get, "/cache/users/{id}", cached_user_api())
        .on(Verb::Get, "/cache/products/{sku}", cached_product_api())
}

fn order_id() -> Param {
    Param::uuid("id", "The order's id.")
}

fn placing() -> Operation {
    Operation::new("Places an order, priced from orders' cached copy of the catalogue")
        .param(idempotency_param(
            "The same key from the same user with the same basket gets the same order (200) instead of a new one; with another basket, a 422.",
        ))
        .json_body::<NewOrder>()
        .reply::<OrderView>(StatusCode::CREATED, "The order, pending.")
        .reply::<OrderView>(
            StatusCode::OK,
            "The order this user placed before with this Idempotency-Key and basket.",
        )
        .refusal(
            StatusCode::BAD_REQUEST,
            "The Idempotency-Key is blank, too long or not visible ASCII.",
        )
        .refusal(
            StatusCode::FORBIDDEN,
            "A customer placing an order for someone else, or a producing system.",
        )
        .refusal(
            StatusCode::CONFLICT,
            "The same Idempotency-Key was being used at once; try again.",
        )
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "An unknown or deactivated user, an unknown SKU, a quantity or total out of range, mixed currencies, or an Idempotency-Key used for another basket.",
        )
}

fn listing() -> Operation {
    Operation::new("Orders, newest first, a page at a time")
        .query::<OrderQuery>()
        .reply::<OrderPage>(StatusCode::OK, "A page of orders.")
        .refusal(
            StatusCode::FORBIDDEN,
            "A customer listing someone else's orders, or a producing system.",
        )
}

fn showing() -> Operation {
    Operation::new("An order: the caller's own, or any for an admin")
        .param(order_id())
        .reply::<OrderView>(StatusCode::OK, "The order.")
        .refusal(StatusCode::NOT_FOUND, "No such order, or someone else's.")
}

fn cancelling() -> Operation {
    Operation::new("Cancels a pending order")
        .param(order_id())
        .reply::<OrderView>(StatusCode::OK, "The order, cancelled.")
        .refusal(StatusCode::NOT_FOUND, "No such order, or someone else's.")
        .refusal(
            StatusCode::CONFLICT,
            "The order is no longer pending (confirmed or cancelled).",
        )
}

fn cached_user_api() -> Operation {
    Operation::cached_user(
        "orders' cached copy of a user",
        "`user_id`, `active` and `version`.",
    )
}

fn cached_product_api() -> Operation {
    Operation::new("orders' cached copy of a product")
        .param(Param::sku("sku", "The product's SKU."))
        .reply_object(
            StatusCode::OK,
            "`sku`, `price_cents`, `currency` and `version`.",
        )
        .refusal(StatusCode::NOT_FOUND, "The product is not cached (yet).")
}

/// The longest Idempotency-Key, in bytes (it is visible ASCII: as many characters).
const IDEMPOTENCY_KEY_BYTES: usize = 200;

/// An order to place.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewOrder {
    /// Whose order this is; a customer's own id when left out.
    #[schemars(extend("format" = "uuid"))]
    user_id: Option<String>,
    /// What to buy. Lines of one SKU become one line; at most 100 different SKUs.
    #[schemars(length(min = 1))]
    items: Vec<NewItem>,
}

/// One line of an order to place.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewItem {
    #[schemars(length(max = input::MAX_SKU_CHARS))]
    #[schemars(regex(pattern = SKU))]
    sku: String,
    /// Units; the lines of one SKU together have 1 to 1,000.
    #[schemars(range(min = 1, max = basket::MAX_QUANTITY))]
    quantity: i32,
}

/// The order this user placed with this Idempotency-Key, if any.
async fn find_by_key(pool: &PgPool, user_id: Uuid, key: &str) -> ApiResult<Option<Order>> {
    Ok(sqlx::query_as::<_, Order>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE user_id = $1 AND idempotency_key = $2"
    ))
    .bind(user_id)
    .bind(key)
    .fetch_optional(pool)
    .await?)
}

/// The `Idempotency-Key` header, described: what a repeat with it gets.
pub(crate) fn idempotency_param(description: &'static str) -> Param {
    Param::header(
        "Idempotency-Key",
        description,
        json!({
            "type": "string",
            "minLength": 1,
            "maxLength": IDEMPOTENCY_KEY_BYTES,
            "pattern": "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$",
        }),
    )
}

/// The `Idempotency-Key` header, if the request has one.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key").map(|value| value.to_str()) {
        None => Ok(None),
        Some(Ok(key)) if !key.trim().is_empty() && key.len() <= IDEMPOTENCY_KEY_BYTES => {
            Ok(Some(key.trim().to_owned()))
        }
        Some(_) => Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 200 visible characters",
        )),
    }
}

/// The answer to a request that repeats an Idempotency-Key: the order it placed (200), or a
/// 422 when the key was used for a different basket (Stripe's semantics).
fn replay(existing: &Order, lines: &[(String, i32)], key: &str) -> AppResult {
    if basket::same_lines(&existing.items.0, lines) {
        Ok((StatusCode::OK, Json(existing.to_json())))
    } else {
        Err(ApiError::unprocessable(format!(
            "Idempotency-Key {key:?} was used for a different order ({}); use a new key for a new order",
            existing.id
        )))
    }
}

async fn check_user(pool: &PgPool, user_id: Uuid) -> ApiResult<()> {
    let active: Option<bool> =
        sqlx::query_scalar("SELECT active FROM users_cache WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    match active {
        None => Err(ApiError::unprocessable(format!("unknown user {user_id}"))),
        Some(false) => Err(ApiError::unprocessable(format!(
            "user {user_id} is deactivated"
        ))),
        Some(true) => Ok(()),
    }
}

/// Prices the basket from orders' cached copy of the products.
async fn price_basket(pool: &PgPool, lines: &[(String, i32)]) -> ApiResult<basket::Priced> {
    let skus: Vec<&str> = lines.iter().map(|(sku, _)| sku.as_str()).collect();
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT sku, price_cents, currency FROM products_cache WHERE sku = ANY($1)")
            .bind(&skus)
            .fetch_all(pool)
            .await?;
    let prices = rows
        .into_iter()
        .map(|(sku, cents, currency)| (sku, basket::Price { cents, currency }))
        .collect();
    basket::price(lines, &prices).map_err(|error| ApiError::unprocessable(error.to_string()))
}

/// Whose order a request places: the `user_id` it names, which a customer may only set to
/// themselves.
fn orderer(caller: &Caller, user_id: Option<&str>) -> ApiResult<Uuid> {
    let user_id = match user_id {
        Some(text) => Uuid::parse_str(text).map_err(|_| {
            ApiError::unprocessable(format!("user_id {} is not a UUID", input::shown(text)))
        })?,
        None => caller
            .user_id()
            .ok_or_else(|| ApiError::unprocessable("user_id is missing"))?,
    };
    if caller.may_act_for(user_id) {
        Ok(user_id)
    } else {
        Err(ApiError::forbidden(
            "you may place orders only as yourself: leave user_id out or give your own",
        ))
    }
}

async fn place(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewOrder>,
) -> AppResult {
    let key = idempotency_key(&headers)?;
    let user_id = orderer(&caller, new.user_id.as_deref())?;
    // Every SKU is checked before any reaches the database: a NUL or a huge text would
    // fail there, and one that is not a SKU cannot be in the catalogue anyway.
    for (index, item) in new.items.iter().enumerate() {
        input::check_sku(&format!("items[{index}].sku"), &item.sku)?;
    }
    let lines = basket::merge_lines(new.items.into_iter().map(|item| (item.sku, item.quantity)))
        .map_err(|error| ApiError::unprocessable(error.to_string()))?;
    if let Some(key) = &key
        && let Some(existing) = find_by_key(&state.pool, user_id, key).await?
    {
        return replay(&existing, &lines, key);
    }
    check_user(&state.pool, user_id).await?;
    let priced = price_basket(&state.pool, &lines).await?;
    let order_id = Uuid::now_v7();
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query_as::<_, Order>(
        concat!(
            "INSERT INTO orders (id, user_id, status, items, total_cents, currency, idempotency_key,
                                 deadline_at, deadline_scheduled)
             VALUES ($1, $2, 'pending', $3, $4, $5, $6, clock_timestamp() + make_interval(secs => $7), true)
             ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING ",
            order_columns!()
        ),
    )
    .bind(order_id)
    .bind(user_id)
    .bind(sqlx::types::Json(&priced.items))
    .bind(priced.total_cents)
    .bind(&priced.currency)
    .bind(&key)
    // What the previous release's instances compare with during a rolling upgrade; this
    // release's deadline is the scheduled event below.
    .bind(state.saga_timeout.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(placed) = inserted else {
        // The same key won a race with this request: answer as a repeat would be answered.
        drop(tx);
        let key = key.unwrap_or_default();
        return match find_by_key(&state.pool, user_id, &key).await? {
            Some(existing) => replay(&existing, &lines, &key),
            None => Err(ApiError::conflict(
                "the order could not be placed; try again",
            )),
        };
    };
    let created = OrderCreatedV1 {
        order_id,
        user_id,
        items: priced.items,
        total_cents: priced.total_cents,
        currency: priced.currency,
    };
    state
        .outbox
        .add(&mut tx, &run_event(order_id, &created))
        .await?;
    deadline::schedule(&state.outbox, &mut tx, order_id, state.saga_timeout).await?;
    tx.commit().await?;
    flows::metrics::run_started(&order_saga::ORDER_FLOW);
    Ok((StatusCode::CREATED, Json(placed.to_json())))
}

async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    let id = parse_uuid(&id, "order")?;
    let order = sqlx::query_as::<_, Order>(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    // Someone else's order is answered as no order: its existence is not ours to tell.
    .filter(|order| caller.may_act_for(order.user_id))
    .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
    Ok((StatusCode::OK, Json(order.to_json())))
}

/// The user whose orders a listing may show: any (or all) for an admin, only their own for
/// a customer.
fn listed_user(caller: &Caller, asked: Option<Uuid>) -> ApiResult<Option<Uuid>> {
    if caller.is_admin() {
        return Ok(asked);
    }
    match (caller.user_id(), asked) {
        (Some(own), None) => Ok(Some(own)),
        (Some(own), Some(asked)) if own == asked => Ok(Some(own)),
        (Some(_), Some(_)) => Err(ApiError::forbidden(
            "you may list only your own orders: leave user_id out or give your own",
        )),
        (None, _) => Err(ApiError::forbidden(
            "listing orders needs a customer's or an admin's token",
        )),
    }
}

/// Orders a page holds unless `limit` says; `limit` goes up to [`MAX_PAGE`].
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

/// Which orders to list.
#[derive(Debug, Deserialize, JsonSchema)]
struct OrderQuery {
    /// Whose orders: the caller's own when left out (an admin's: everyone's).
    #[schemars(extend("format" = "uuid"))]
    user_id: Option<String>,
    #[schemars(extend("enum" = ["pending", "confirmed", "cancelled"]))]
    status: Option<String>,
    /// The `next` of the previous page: the last order it listed.
    #[schemars(extend("format" = "uuid"))]
    after: Option<String>,
    /// How many orders a page holds; 100 when left out.
    #[schemars(range(min = 1, max = MAX_PAGE))]
    limit: Option<i64>,
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, JsonSchema)]
struct OrderPage {
    orders: Vec<OrderView>,
    /// What to pass as `after` for the next page; null on the last.
    next: Option<Uuid>,
}

/// Lists orders newest first, a page at a time (keyset pagination on `created_at, id`, so
/// a page costs the same however deep it is); `next` names the cursor of the page after,
/// or is null on the last one.
async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<OrderQuery>,
) -> ApiResult<(StatusCode, Json<OrderPage>)> {
    let asked = query
        .user_id
        .as_deref()
        .map(|id| {
            id.parse::<Uuid>()
                .map_err(|_| ApiError::bad_request(format!("user_id {id:?} is not a UUID")))
        })
        .transpose()?;
    let user_id = listed_user(&caller, asked)?;
    if let Some(status) = &query.status
        && !["pending", "confirmed", "cancelled"].contains(&status.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "status {status:?} is not pending, confirmed or cancelled"
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is not between 1 and {MAX_PAGE}"
        )));
    }
    let after = query.after.as_deref().map(page_cursor).transpose()?;
    let mut connection = state.pool.acquire().await?;
    // Where the previous page ended: the cursor order's creation time, and its id.
    let after_created: Option<DateTime<Utc>> = match after {
        None => None,
        Some(id) => Some(
            sqlx::query_scalar("SELECT created_at FROM orders WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *connection)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request(format!("after {id}: there is no such order"))
                })?,
        ),
    };
    let orders: Vec<Order> = sqlx::query_as(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders
         WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(user_id)
    .bind(&query.status)
    .bind(after_created)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *connection)
    .await?;
    let next = (orders.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| orders.last().map(|order| order.id))
        .flatten();
    let orders = orders.iter().map(Order::view).collect();
    Ok((StatusCode::OK, Json(OrderPage { orders, next })))
}

fn page_cursor(text: &str) -> Result<Uuid, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "after {text:?} is not a cursor: pass the `next` of the previous page"
        ))
    })
}

async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    let id = parse_uuid(&id, "order")?;
    let owner: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    if !owner.is_some_and(|owner| caller.may_act_for(owner)) {
        return Err(ApiError::not_found(format!("no order {id}")));
    }
    let mut tx = state.pool.begin().await?;
    let cancelled = order::cancel(
        &mut tx,
        id,
        CancelReason::CustomerCancelled,
        "cancelled by the customer".to_owned(),
    )
    .await?;
    if let Some(ended) = cancelled {
        order::publish_cancelled(&state.outbox, &mut tx, &ended.event).await?;
        deadline::forget(&state.outbox, &mut tx, id).await?;
        tx.commit().await?;
        ended.outcome.record();
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
    show(State(state), caller, Path(id.to_string())).await
}

async fn cached_user(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    caller.require(platform::Scope::ADMIN)?;
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

async fn cached_product(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(sku): Path<String>,
) -> AppResult {
    caller.require(platform::Scope::ADMIN)?;
    input::path_text("sku", &sku, input::MAX_SKU_CHARS)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_router_serves_its_route_table_and_nothing_else() {
        let state = Arc::new(AppState {
            pool: platform::routes::probe_pool().unwrap(),
            outbox: Outbox::new(),
            saga_timeout: Duration::from_secs(60),
            return_timeout: Duration::from_secs(60),
            return_window: Duration::from_secs(60),
        });
        platform::routes::assert_serves(routes(state).finish(), crate::ROUTES).await;
    }
}
