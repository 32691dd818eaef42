//! A return as stored and served, and the two ways a pending return ends.

use chrono::{DateTime, Utc};
use events_schema::inventory::Item;
use events_schema::returns::{ReturnCancelReason, ReturnCancelledV1, ReturnClosedV1};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::order::fit_detail;

/// The columns a [`Return`] reads, named rather than `*` (see `order_columns!`).
macro_rules! return_columns {
    () => {
        "id, order_id, user_id, status, reason, detail, lines, refund_cents, currency, created_at, finished_at"
    };
}
pub(crate) use return_columns;

/// A return as the API answers it, and the schema of that answer.
#[derive(Debug, Clone, Serialize, JsonSchema, sqlx::FromRow)]
pub(crate) struct Return {
    pub(crate) id: Uuid,
    pub(crate) order_id: Uuid,
    pub(crate) user_id: Uuid,
    #[schemars(extend("enum" = ["pending", "closed", "cancelled"]))]
    pub(crate) status: String,
    /// Why it was cancelled (`pickup-failed`, `deadline-passed`, `customer-cancelled`);
    /// null otherwise.
    pub(crate) reason: Option<String>,
    /// What happened, in words; null unless cancelled.
    pub(crate) detail: Option<String>,
    /// What is sent back: SKUs and quantities.
    #[schemars(with = "Vec<ReturnLine>")]
    pub(crate) lines: sqlx::types::Json<Vec<Item>>,
    /// What the lines cost when bought, refunded once the return closes; in the currency's
    /// minor unit (cents).
    pub(crate) refund_cents: i64,
    /// An ISO 4217 code, like `EUR`.
    pub(crate) currency: String,
    pub(crate) created_at: DateTime<Utc>,
    /// When it closed or was cancelled; null while pending.
    pub(crate) finished_at: Option<DateTime<Utc>>,
}

/// One line of a return, as the API shows it.
#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used.
struct ReturnLine {
    sku: String,
    quantity: i32,
}

/// A return that just ended: the event to emit, and the row as it now stands.
pub(crate) struct Ended<E> {
    pub(crate) event: E,
    pub(crate) row: Return,
}

impl<E> Ended<E> {
    /// How long the return took, requested to ended.
    pub(crate) fn seconds(&self) -> f64 {
        let ended = self.row.finished_at.unwrap_or(self.row.created_at);
        (ended - self.row.created_at).num_milliseconds() as f64 / 1000.0
    }
}

/// Counts a return that ended after `seconds` in the return flow's metrics; call once the
/// transaction that ended it committed.
pub(crate) fn record_end(outcome: flows::Outcome, reason: &str, seconds: f64) {
    flows::metrics::run_ended(&super::RETURN_FLOW, outcome, reason, seconds);
}

/// The return `order_id` made with this Idempotency-Key, if any.
pub(crate) async fn find_by_key(
    tx: &mut PgConnection,
    order_id: Uuid,
    key: &str,
) -> Result<Option<Return>, sqlx::Error> {
    sqlx::query_as::<_, Return>(concat!(
        "SELECT ",
        return_columns!(),
        " FROM returns WHERE order_id = $1 AND idempotency_key = $2"
    ))
    .bind(order_id)
    .bind(key)
    .fetch_optional(tx)
    .await
}

/// Closes `return_id` if it is still pending; `None` when it had already ended.
pub(crate) async fn close(
    tx: &mut PgConnection,
    return_id: Uuid,
) -> Result<Option<Ended<ReturnClosedV1>>, sqlx::Error> {
    let closed = sqlx::query_as::<_, Return>(concat!(
        "UPDATE returns SET status = 'closed', finished_at = clock_timestamp()
         WHERE id = $1 AND status = 'pending' RETURNING ",
        return_columns!()
    ))
    .bind(return_id)
    .fetch_optional(tx)
    .await?;
    Ok(closed.map(|closed| Ended {
        event: ReturnClosedV1 {
            return_id,
            order_id: closed.order_id,
            user_id: closed.user_id,
            lines: closed.lines.0.clone(),
            refund_cents: closed.refund_cents,
            currency: closed.currency.clone(),
        },
        row: closed,
    }))
}

/// Cancels `return_id` if it is still pending; returns the `return.cancelled` event to
/// emit, or `None` when the return had already ended (a late answer changes nothing).
pub(crate) async fn cancel(
    tx: &mut PgConnection,
    return_id: Uuid,
    reason: ReturnCancelReason,
    detail: String,
) -> Result<Option<Ended<ReturnCancelledV1>>, sqlx::Error> {
    let detail = fit_detail(detail);
    let cancelled = sqlx::query_as::<_, Return>(concat!(
        "UPDATE returns SET status = 'cancelled', reason = $2, detail = $3, finished_at = clock_timestamp()
         WHERE id = $1 AND status = 'pending' RETURNING ",
        return_columns!()
    ))
    .bind(return_id)
    .bind(events_schema::wire_name(reason))
    .bind(&detail)
    .fetch_optional(tx)
    .await?;
    Ok(cancelled.map(|cancelled| Ended {
        event: ReturnCancelledV1 {
            return_id,
            order_id: cancelled.order_id,
            user_id: cancelled.user_id,
            reason,
            detail: Some(detail),
            skus: cancelled
                .lines
                .0
                .iter()
                .map(|line| line.sku.clone())
                .collect(),
        },
        row: cancelled,
    }))
}
