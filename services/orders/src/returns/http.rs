//! The return API: a customer asks to return lines of one of their confirmed orders, reads
//! the return, and may cancel it while it is pending.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use conveyor::Event;
use events_schema::inventory::Item;
use events_schema::orders::PricedItem;
use events_schema::returns::{ReturnCancelReason, ReturnDeadlinePassedV1, ReturnRequestedV1};
use platform::openapi::{Operation, Param, SKU};
use platform::{ApiError, ApiResult, Caller, JsonBody, input, parse_uuid};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::rules::{self, Returnable};
use super::store::{self, Return, return_columns};
use crate::basket;
use crate::http::{AppState, idempotency_key, idempotency_param};
use crate::order::run_event;

type AppResult = ApiResult<(StatusCode, Json<Value>)>;

/// Lines of an order to send back.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct NewReturn {
    /// What to send back: each SKU once, at most what the order bought across its returns.
    #[schemars(length(min = 1, max = basket::MAX_ITEMS))]
    lines: Vec<NewLine>,
}

/// One line of a return.
#[derive(Debug, Deserialize, JsonSchema)]
struct NewLine {
    #[schemars(length(max = input::MAX_SKU_CHARS))]
    #[schemars(regex(pattern = SKU))]
    sku: String,
    #[schemars(range(min = 1, max = basket::MAX_QUANTITY))]
    quantity: i32,
}

pub(crate) fn requesting() -> Operation {
    Operation::new("Asks to return lines of a confirmed order")
        .param(Param::uuid("id", "The order's id."))
        .param(idempotency_param(
            "The same key on the same order with the same lines gets the same return (200), as it now stands, instead of a new one; with other lines, a 422.",
        ))
        .json_body::<NewReturn>()
        .reply::<Return>(StatusCode::CREATED, "The return, pending.")
        .reply::<Return>(
            StatusCode::OK,
            "The return this order made before with this Idempotency-Key and these lines.",
        )
        .refusal(
            StatusCode::BAD_REQUEST,
            "The Idempotency-Key is blank, too long or not visible ASCII.",
        )
        .refusal(StatusCode::NOT_FOUND, "No such order, or someone else's.")
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The order is not confirmed, or its return window (RETURN_WINDOW) has closed, or a line names a SKU it did not buy, names one twice, or asks back more than is left to return, or the Idempotency-Key was used for other lines.",
        )
}

pub(crate) fn showing() -> Operation {
    Operation::new("A return: the caller's own, or any for an admin")
        .param(Param::uuid("id", "The return's id."))
        .reply::<Return>(StatusCode::OK, "The return.")
        .refusal(StatusCode::NOT_FOUND, "No such return, or someone else's.")
}

pub(crate) fn cancelling() -> Operation {
    Operation::new("Cancels a pending return")
        .param(Param::uuid("id", "The return's id."))
        .reply::<Return>(StatusCode::OK, "The return, cancelled.")
        .refusal(StatusCode::NOT_FOUND, "No such return, or someone else's.")
        .refusal(
            StatusCode::CONFLICT,
            "The return is no longer pending (closed or cancelled).",
        )
}

/// What a return is checked against: the order, locked, so two returns of one order are
/// decided one at a time.
#[derive(sqlx::FromRow)]
struct Bought {
    user_id: Uuid,
    status: String,
    items: sqlx::types::Json<Vec<PricedItem>>,
    currency: String,
    /// Whether the order was confirmed within the return window.
    in_window: bool,
}

async fn lock_order(
    tx: &mut PgConnection,
    order_id: Uuid,
    window: f64,
) -> ApiResult<Option<Bought>> {
    Ok(sqlx::query_as::<_, Bought>(
        "SELECT user_id, status, items, currency,
                coalesce(finished_at + make_interval(secs => $2) > clock_timestamp(), false)
                    AS in_window
         FROM orders WHERE id = $1 FOR UPDATE",
    )
    .bind(order_id)
    .bind(window)
    .fetch_optional(tx)
    .await?)
}

/// The lines of `order_id` that its returns not cancelled took back already.
async fn returned_so_far(tx: &mut PgConnection, order_id: Uuid) -> ApiResult<Vec<Item>> {
    let taken: Vec<sqlx::types::Json<Vec<Item>>> = sqlx::query_scalar(
        "SELECT lines FROM returns WHERE order_id = $1 AND status <> 'cancelled'",
    )
    .bind(order_id)
    .fetch_all(tx)
    .await?;
    Ok(taken.into_iter().flat_map(|lines| lines.0).collect())
}

pub(crate) async fn request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewReturn>,
) -> AppResult {
    let order_id = parse_uuid(&id, "order")?;
    let key = idempotency_key(&headers)?;
    for (index, line) in new.lines.iter().enumerate() {
        input::check_sku(&format!("lines[{index}].sku"), &line.sku)?;
    }
    let asked: Vec<(String, i32)> = new
        .lines
        .into_iter()
        .map(|line| (line.sku, line.quantity))
        .collect();
    let mut tx = state.pool.begin().await?;
    let window = state.return_window.as_secs_f64();
    let bought = lock_order(&mut tx, order_id, window)
        .await?
        .filter(|bought| caller.may_act_for(bought.user_id))
        .ok_or_else(|| ApiError::not_found(format!("no order {order_id}")))?;
    // Under the order's lock, so a repeat sent at once waits for the first and finds it.
    if let Some(key) = &key
        && let Some(made) = store::find_by_key(&mut tx, order_id, key).await?
    {
        return replay(made, &asked, key);
    }
    if bought.status != "confirmed" {
        return Err(ApiError::unprocessable(format!(
            "order {order_id} is {}: only a confirmed order's lines can be returned",
            bought.status
        )));
    }
    if !bought.in_window {
        return Err(ApiError::unprocessable(format!(
            "order {order_id} was confirmed more than {:?} ago (RETURN_WINDOW): its lines can no longer be returned",
            state.return_window
        )));
    }
    let returned = returned_so_far(&mut tx, order_id).await?;
    let Returnable {
        lines,
        refund_cents,
    } = rules::returnable(order_id, &bought.items, &returned, &asked)
        .map_err(|error| ApiError::unprocessable(error.to_string()))?;
    let return_id = Uuid::now_v7();
    let placed = sqlx::query_as::<_, Return>(concat!(
        "INSERT INTO returns (id, order_id, user_id, status, lines, refund_cents, currency,
                              idempotency_key)
         VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7) RETURNING ",
        return_columns!()
    ))
    .bind(return_id)
    .bind(order_id)
    .bind(bought.user_id)
    .bind(sqlx::types::Json(&lines))
    .bind(refund_cents)
    .bind(&bought.currency)
    .bind(&key)
    .fetch_one(&mut *tx)
    .await?;
    let requested = ReturnRequestedV1 {
        return_id,
        order_id,
        user_id: bought.user_id,
        lines,
        refund_cents,
        currency: bought.currency,
    };
    state
        .outbox
        .add(&mut tx, &run_event(return_id, &requested))
        .await?;
    // ANCHOR: deadline
    let timeout = state.return_timeout;
    let deadline = ReturnDeadlinePassedV1 {
        return_id,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    state
        .outbox
        .add_after(&mut tx, &run_event(return_id, &deadline), timeout)
        .await?;
    // ANCHOR_END: deadline
    tx.commit().await?;
    flows::metrics::run_started(&super::RETURN_FLOW);
    Ok((StatusCode::CREATED, Json(to_json(&placed))))
}

/// The answer to a request that repeats an Idempotency-Key: the return it made (200), or a
/// 422 when the key was used for other lines.
fn replay(made: Return, asked: &[(String, i32)], key: &str) -> AppResult {
    if rules::same_lines(&made.lines.0, asked) {
        Ok((StatusCode::OK, Json(to_json(&made))))
    } else {
        Err(ApiError::unprocessable(format!(
            "Idempotency-Key {key:?} was used for other lines (return {}); use a new key for a new return",
            made.id
        )))
    }
}

fn to_json(placed: &Return) -> Value {
    // Ids, texts, numbers and times always serialize.
    serde_json::to_value(placed).unwrap_or_default()
}

async fn find(state: &AppState, caller: &Caller, return_id: Uuid) -> ApiResult<Return> {
    sqlx::query_as::<_, Return>(concat!(
        "SELECT ",
        return_columns!(),
        " FROM returns WHERE id = $1"
    ))
    .bind(return_id)
    .fetch_optional(&state.pool)
    .await?
    // Someone else's return is answered as no return: its existence is not ours to tell.
    .filter(|found| caller.may_act_for(found.user_id))
    .ok_or_else(|| ApiError::not_found(format!("no return {return_id}")))
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    let return_id = parse_uuid(&id, "return")?;
    let found = find(&state, &caller, return_id).await?;
    Ok((StatusCode::OK, Json(to_json(&found))))
}

pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> AppResult {
    let return_id = parse_uuid(&id, "return")?;
    find(&state, &caller, return_id).await?;
    let mut tx = state.pool.begin().await?;
    let cancelled = store::cancel(
        &mut tx,
        return_id,
        ReturnCancelReason::CustomerCancelled,
        "cancelled by the customer".to_owned(),
    )
    .await?;
    let Some(cancelled) = cancelled else {
        drop(tx);
        let found = find(&state, &caller, return_id).await?;
        return Err(ApiError::conflict(format!(
            "return {return_id} is {}; only pending returns can be cancelled",
            found.status
        )));
    };
    state
        .outbox
        .add(&mut tx, &run_event(return_id, &cancelled.event))
        .await?;
    state
        .outbox
        .cancel_scheduled(
            &mut tx,
            ReturnDeadlinePassedV1::TYPE,
            &return_id.to_string(),
        )
        .await?;
    tx.commit().await?;
    let reason = events_schema::wire_name(ReturnCancelReason::CustomerCancelled);
    store::record_end(flows::Outcome::Failure, &reason, cancelled.seconds());
    Ok((StatusCode::OK, Json(to_json(&cancelled.row))))
}
