//! The order saga: its declaration ([`ORDER_FLOW`]), and what inventory, payments and
//! shipping share as its participants.
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
//! - `flow`: [`ORDER_FLOW`], the saga declared as a flow.
//! - [`settled_query!`] and [`is_settled`]: the guard a step checks first, in one query.
//! - [`remember_cancelled`]: what the guard reads.
//! - [`order_key`]: the key a step is serialized on, the same as its cancellation's.
//! - [`Compensation`] and [`UndoOnCancel`]: the `order.cancelled` handler that records the
//!   cancellation and undoes the service's step.

mod flow;

pub use flow::ORDER_FLOW;

use conveyor::{Event, EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::orders::OrderCancelledV1;
use sqlx::PgConnection;
use uuid::Uuid;

/// The key every saga event of one order is serialized on: its id.
pub fn order_key(order_id: Uuid) -> String {
    order_id.to_string()
}

/// The query a step's guard runs: whether the step for order `$1` is settled, because this
/// service took it already (`$acted`, an SQL condition on `$1`) or saw the order cancelled.
/// One query, one round trip.
#[macro_export]
macro_rules! settled_query {
    ($acted:literal) => {
        concat!("SELECT ", $crate::settled_condition!($acted))
    };
}

/// The condition of [`settled_query!`], to embed in a query of the step's own.
#[macro_export]
macro_rules! settled_condition {
    ($acted:literal) => {
        concat!(
            "(",
            $acted,
            ") OR EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)"
        )
    };
}

/// Runs a [`settled_query!`] for `order_id`: `true` when the step must not be taken (again).
///
/// # Errors
/// The database's error.
pub async fn is_settled(
    tx: &mut PgConnection,
    order_id: Uuid,
    settled_query: &'static str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(settled_query)
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

    /// Keys the undo needs beside the order's: those of shared rows it changes, the same
    /// ones the step takes (inventory's products), so an undo and another order's step never
    /// lock those rows crosswise.
    fn extra_keys(&self, cancelled: &OrderCancelledV1) -> Vec<String> {
        let _ = cancelled;
        Vec::new()
    }

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
        let mut keys = vec![order_key(cancelled.order_id)];
        keys.extend(self.0.extra_keys(cancelled));
        keys
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
