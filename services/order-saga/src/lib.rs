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
//! - [`settled_query!`] and [`is_settled`]: the guard a step checks first, in one query,
//!   over [`CANCELLED_ORDERS`], which `flows::UndoOnFailure` fills.
//! - [`order_key`]: the key a step is serialized on, the same as its cancellation's.
//!
//! A participant undoes its step with `flows::UndoOnFailure` over its own
//! `flows::Compensate` of `order.cancelled`.

mod flow;

pub use flow::ORDER_FLOW;

use flows::FailedRuns;
pub use flows::guard::is_settled;
use uuid::Uuid;

/// For the macros, which expand in the services' crates.
#[doc(hidden)]
pub use flows as __flows;

/// Where each participant remembers the orders it saw cancelled: its `cancelled_orders`.
pub const CANCELLED_ORDERS: FailedRuns = FailedRuns {
    table: "cancelled_orders",
    column: "order_id",
};

/// The key every saga event of one order is serialized on: its id.
pub fn order_key(order_id: Uuid) -> String {
    flows::run_key(order_id)
}

/// The query a step's guard runs: whether the step for order `$1` is settled, because this
/// service took it already (`$acted`, an SQL condition on `$1`) or saw the order cancelled.
/// One query, one round trip.
#[macro_export]
macro_rules! settled_query {
    ($acted:literal) => {
        $crate::__flows::settled_query!("cancelled_orders", "order_id", $acted)
    };
}

/// The condition of [`settled_query!`], to embed in a query of the step's own.
#[macro_export]
macro_rules! settled_condition {
    ($acted:literal) => {
        $crate::__flows::settled_condition!("cancelled_orders", "order_id", $acted)
    };
}
