//! On `order.cancelled`: cancel the order's scheduled shipment (`shipment.cancelled`).

use conveyor::HandlerError;
use events_schema::shipping::ShipmentCancelledV1;
use order_saga::Compensation;
use sqlx::PgConnection;
use uuid::Uuid;

/// On `order.cancelled`: cancel a scheduled shipment (`shipment.cancelled`).
pub(crate) struct Cancel;

impl Compensation for Cancel {
    type Undone = ShipmentCancelledV1;

    async fn undo(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
    ) -> Result<Option<ShipmentCancelledV1>, HandlerError> {
        let shipment: Option<Uuid> = sqlx::query_scalar(
            "UPDATE shipments SET status = 'cancelled', updated_at = now()
             WHERE order_id = $1 AND status = 'scheduled' RETURNING id",
        )
        .bind(order_id)
        .fetch_optional(tx)
        .await?;
        Ok(shipment.map(|shipment_id| ShipmentCancelledV1 {
            order_id,
            shipment_id,
        }))
    }
}
