//! What inventory, payments and shipping share as participants of the order saga.
//!
//! Each of them takes one step for an order (reserve, charge, ship) and undoes it when the
//! order is cancelled. Answers can arrive late or out of order, so each service remembers
//! the orders it saw cancelled, in its own `cancelled_orders` table: a step that arrives
//! after the cancellation is skipped, and a step taken before it is undone. The runtime
//! serializes events that share an order id (their subject), so the step and the
//! cancellation of one order never run at the same time, in any replica.
//!
//! # Layout
//!
//! - [`is_cancelled`] and [`remember_cancelled`]: the guard a step checks first.
//! - [`order_key`]: the key a step is serialized on, the same as its cancellation's.
//! - [`Compensation`] and [`UndoOnCancel`]: the `order.cancelled` handler that records the
//!   cancellation and undoes the service's step.

use conveyor::{Event, EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::orders::OrderCancelledV1;
use sqlx::PgConnection;
use uuid::Uuid;

/// The key every saga event of one order is serialized on: its id.
pub fn order_key(order_id: Uuid) -> String {
    order_id.to_string()
}

/// Whether this service saw `order_id` cancelled: its step must not be taken any more.
///
/// # Errors
/// The database's error.
pub async fn is_cancelled(tx: &mut PgConnection, order_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)")
        .bind(order_id)
        .fetch_one(tx)
        .await
}

/// Records that `order_id` was cancelled; harmless when it already was.
///
/// # Errors
/// The database's error.
pub async fn remember_cancelled(tx: &mut PgConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO cancelled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(order_id)
        .execute(tx)
        .await
        .map(drop)
}

/// How one service undoes its step for a cancelled order.
pub trait Compensation: Send + Sync + 'static {
    /// The event announcing the undo (`inventory.released`, `payment.refunded`, …).
    type Undone: Event;

    /// Undoes the step taken for `order_id`, if one was taken and is not undone yet, and
    /// returns the event that says so; `None` when there was nothing to undo.
    fn undo(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
    ) -> impl Future<Output = Result<Option<Self::Undone>, HandlerError>> + Send;
}

/// On `order.cancelled`: remember the cancellation, so a late step is skipped, then undo
/// the step if it was taken and announce it.
pub struct UndoOnCancel<C>(pub C);

impl<C: Compensation> EventHandler for UndoOnCancel<C> {
    type Event = OrderCancelledV1;

    /// The order: the same key as the step it undoes.
    fn keys(&self, cancelled: &OrderCancelledV1, _meta: &EventMeta) -> Vec<String> {
        vec![order_key(cancelled.order_id)]
    }

    async fn handle(
        &self,
        cancelled: OrderCancelledV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let order_id = cancelled.order_id;
        remember_cancelled(ctx.tx(), order_id).await?;
        match self.0.undo(ctx.tx(), order_id).await? {
            Some(undone) => ctx.emit(order_id, &undone).await,
            None => Ok(()),
        }
    }
}
