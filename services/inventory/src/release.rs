//! On `order.cancelled`: release what was reserved for the order (`inventory.released`).

use conveyor::{HandlerContext, HandlerError};
use events_schema::inventory::{InventoryReleasedV1, Item};
use events_schema::orders::OrderCancelledV1;
use flows::{Compensate, FailedRuns};
use uuid::Uuid;

use crate::reserve::product_key;

pub(crate) struct ReleaseStock;

impl Compensate for ReleaseStock {
    type Failure = OrderCancelledV1;
    type Undone = InventoryReleasedV1;

    const FAILED_RUNS: FailedRuns = order_saga::CANCELLED_ORDERS;

    fn run_id(cancelled: &OrderCancelledV1) -> Uuid {
        cancelled.order_id
    }

    /// The products the order named, when the cancellation says: a release then never
    /// locks stock crosswise with another order's reservation. Without them a deadlock is
    /// possible, which Postgres detects and the runtime retries.
    fn extra_keys(&self, cancelled: &OrderCancelledV1) -> Vec<String> {
        cancelled.skus.iter().map(|sku| product_key(sku)).collect()
    }

    /// Marks the reservation released and gives its quantities back, in one statement.
    async fn undo(
        &self,
        ctx: &mut HandlerContext<'_>,
        order_id: Uuid,
    ) -> Result<Option<InventoryReleasedV1>, HandlerError> {
        let released: Option<sqlx::types::Json<Vec<Item>>> = sqlx::query_scalar(
            "WITH released AS (
                 UPDATE reservations SET status = 'released'
                 WHERE order_id = $1 AND status = 'reserved' RETURNING items),
             given_back AS (
                 UPDATE products AS p SET reserved = p.reserved - (line->>'quantity')::int
                 FROM released, jsonb_array_elements(released.items) AS line
                 WHERE p.sku = line->>'sku')
             SELECT items FROM released",
        )
        .bind(order_id)
        .fetch_optional(ctx.tx())
        .await?;
        Ok(released.map(|sqlx::types::Json(items)| InventoryReleasedV1 { order_id, items }))
    }
}
