//! An order as stored and served, and the two ways a pending order ends.

use chrono::{DateTime, Utc};
use conveyor::{Envelope, Outbox, OutboxError};
use events_schema::orders::{CancelReason, OrderCancelledV1, OrderConfirmedV1, PricedItem};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Order {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    pub(crate) detail: Option<String>,
    pub(crate) items: sqlx::types::Json<Vec<PricedItem>>,
    pub(crate) total_cents: i64,
    pub(crate) currency: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
}

impl Order {
    pub(crate) fn to_json(&self) -> Value {
        // Ids, texts, numbers and times always serialize.
        serde_json::to_value(self.view()).unwrap_or_default()
    }

    /// The order as the API answers it.
    pub(crate) fn view(&self) -> OrderView {
        let latency_ms = self.finished_at.map(|finished| {
            (finished - self.created_at)
                .num_microseconds()
                .unwrap_or_default() as f64
                / 1000.0
        });
        OrderView {
            id: self.id,
            user_id: self.user_id,
            status: self.status.clone(),
            reason: self.reason.clone(),
            detail: self.detail.clone(),
            items: self.items.0.clone(),
            total_cents: self.total_cents,
            currency: self.currency.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            latency_ms,
        }
    }
}

/// An order as the API answers it, and the schema of that answer.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct OrderView {
    id: Uuid,
    user_id: Uuid,
    #[schemars(extend("enum" = ["pending", "confirmed", "cancelled"]))]
    status: String,
    /// Why it was cancelled (`payment-declined`, `customer-cancelled`, …); null otherwise.
    reason: Option<String>,
    /// What happened, in words; null unless cancelled.
    detail: Option<String>,
    /// One line per SKU, priced when the order was placed.
    #[schemars(schema_with = "priced_items")]
    items: Vec<PricedItem>,
    /// The sum of the lines, in the currency's minor unit (cents).
    total_cents: i64,
    /// An ISO 4217 code, like `EUR`.
    currency: String,
    created_at: DateTime<Utc>,
    /// When it was confirmed or cancelled; null while pending.
    finished_at: Option<DateTime<Utc>>,
    /// From placed to confirmed or cancelled, in milliseconds; null while pending.
    latency_ms: Option<f64>,
}

/// The schema of an order's lines: the event contract's own, `order.created` v1's `items`
/// (the lines stored are the lines published).
fn priced_items(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let items = events_schema::schema_for("order.created", 1)
        .and_then(|file| serde_json::from_str::<Value>(file.text).ok())
        .and_then(|schema| schema.pointer("/properties/items").cloned())
        .unwrap_or_else(|| json!({ "type": "array" }));
    schemars::Schema::try_from(items).unwrap_or_default()
}

/// `order.cancelled`'s detail holds at most this many characters (its schema's `maxLength`).
pub(crate) const MAX_DETAIL_CHARS: usize = 500;

/// Cuts a detail that would break the event's schema, marking the cut: a cancellation never
/// fails for the length of its explanation.
pub(crate) fn fit_detail(detail: String) -> String {
    if detail.chars().count() <= MAX_DETAIL_CHARS {
        return detail;
    }
    let mut cut: String = detail.chars().take(MAX_DETAIL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The text a reason is stored and served as: the contract's (`payment-declined`).
pub(crate) fn reason_text(reason: CancelReason) -> String {
    events_schema::wire_name(reason)
}

/// An order that just ended: the event to emit, and what the saga metrics count once the
/// transaction that ended it commits.
pub(crate) struct Ended<E> {
    pub(crate) event: E,
    pub(crate) outcome: SagaOutcome,
}

/// How and how fast a saga ended.
#[derive(Debug, Clone)]
pub(crate) struct SagaOutcome {
    /// `confirmed` or `cancelled`.
    pub(crate) status: &'static str,
    /// The cancellation's reason; empty for a confirmed order.
    pub(crate) reason: String,
    /// From placed to ended.
    pub(crate) seconds: f64,
}

impl SagaOutcome {
    pub(crate) fn confirmed(seconds: f64) -> Self {
        Self {
            status: "confirmed",
            reason: String::new(),
            seconds,
        }
    }

    pub(crate) fn cancelled(reason: CancelReason, seconds: f64) -> Self {
        Self {
            status: "cancelled",
            reason: reason_text(reason),
            seconds,
        }
    }

    /// Counts it in `conveyor_saga_outcomes_total` and `conveyor_saga_duration_seconds`, and
    /// in the order flow's `conveyor_flow_*` series; call once its transaction committed.
    pub(crate) fn record(&self) {
        let outcome = if self.status == "confirmed" {
            flows::Outcome::Success
        } else {
            flows::Outcome::Failure
        };
        flows::metrics::run_ended(&order_saga::ORDER_FLOW, outcome, &self.reason, self.seconds);
        let metrics = conveyor::metrics::metrics();
        metrics
            .saga_outcomes
            .with_label_values(&[self.status, self.reason.as_str()])
            .inc();
        metrics
            .saga_duration
            .with_label_values(&[self.status])
            .observe(self.seconds);
    }
}

/// Cancels `order_id` if it is still pending; returns the `order.cancelled` event to emit,
/// or `None` when the order had already ended (a late answer changes nothing).
pub(crate) async fn cancel(
    tx: &mut PgConnection,
    order_id: Uuid,
    reason: CancelReason,
    detail: String,
) -> Result<Option<Ended<OrderCancelledV1>>, sqlx::Error> {
    let detail = fit_detail(detail);
    let cancelled: Option<(Uuid, sqlx::types::Json<Vec<PricedItem>>, f64)> =
        sqlx::query_as(
            "UPDATE orders SET status = 'cancelled', reason = $2, detail = $3, finished_at = clock_timestamp()
             WHERE id = $1 AND status = 'pending' RETURNING user_id, items, extract(epoch FROM finished_at - created_at)::float8"
        )
        .bind(order_id)
        .bind(reason_text(reason))
        .bind(&detail)
        .fetch_optional(tx)
        .await?;
    Ok(cancelled.map(|(user_id, items, seconds)| Ended {
        outcome: SagaOutcome::cancelled(reason, seconds),
        event: OrderCancelledV1 {
            order_id,
            user_id,
            reason,
            detail: Some(detail),
            skus: skus_of(&items),
        },
    }))
}

/// The products an order names, each once.
pub(crate) fn skus_of(items: &[PricedItem]) -> Vec<String> {
    let skus: std::collections::BTreeSet<&str> =
        items.iter().map(|item| item.sku.as_str()).collect();
    skus.into_iter().map(str::to_owned).collect()
}

/// Confirms `order_id` if it is still pending; `None` when it had already ended.
pub(crate) async fn confirm(
    tx: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Ended<OrderConfirmedV1>>, sqlx::Error> {
    let row: Option<(Uuid, i64, String, f64)> = sqlx::query_as(
        "UPDATE orders SET status = 'confirmed', finished_at = clock_timestamp()
         WHERE id = $1 AND status = 'pending' RETURNING user_id, total_cents, currency, extract(epoch FROM finished_at - created_at)::float8"
    )
    .bind(order_id)
    .fetch_optional(tx)
    .await?;
    Ok(row.map(|(user_id, total_cents, currency, seconds)| Ended {
        outcome: SagaOutcome::confirmed(seconds),
        event: OrderConfirmedV1 {
            order_id,
            user_id,
            total_cents,
            currency,
        },
    }))
}

/// An event that starts or continues run `run_id`'s own flow, an order's or a return's
/// (subject and correlation = the run's id).
pub(crate) fn run_event<E: events_schema::EventData>(run_id: Uuid, event: &E) -> Envelope {
    events_schema::envelope(crate::SERVICE, event)
        .with_subject(run_id.to_string())
        .with_correlation_id(run_id)
}

/// Writes a cancellation decided here (customer, deadline) to the outbox.
pub(crate) async fn publish_cancelled(
    outbox: &Outbox,
    tx: &mut PgConnection,
    cancelled: &OrderCancelledV1,
) -> Result<(), OutboxError> {
    outbox
        .add(tx, &run_event(cancelled.order_id, cancelled))
        .await
}
