//! On `order.cancelled`: cancel the order's scheduled shipment (`shipment.cancelled`).

use conveyor::{HandlerContext, HandlerError};
use events_schema::orders::OrderCancelledV1;
use events_schema::shipping::ShipmentCancelledV1;
use flows::{Compensate, FailedRuns};
use uuid::Uuid;

/// On `order.cancelled`: cancel a scheduled shipment (`shipment.cancelled`).
pub(crate) struct Cancel;

impl Compensate for Cancel {
    type Failure = OrderCancelledV1;
    type Undone = ShipmentCancelledV1;

    const FAILED_RUNS: FailedRuns = order_saga::CANCELLED_ORDERS;

    fn run_id(cancelled: &OrderCancelledV1) -> Uuid {
        cancelled.order_id
    }

    async fn undo(
        &self,
        ctx: &mut HandlerContext<'_>,
        order_id: Uuid,
    ) -> Result<Option<ShipmentCancelledV1>, HandlerError> {
        let shipment: Option<Uuid> = sqlx::query_scalar(
            "UPDATE shipments SET status = 'cancelled', updated_at = now()
             WHERE order_id = $1 AND status = 'scheduled' RETURNING id",
        )
        .bind(order_id)
        .fetch_optional(ctx.tx())
        .await?;
        Ok(shipment.map(|shipment_id| ShipmentCancelledV1 {
            order_id,
            shipment_id,
        }))
    }
}
