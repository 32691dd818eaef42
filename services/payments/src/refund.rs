//! On `order.cancelled`: refund a captured payment (`payment.refunded`), which gives the
//! amount back to the user's balance.

use conveyor::HandlerError;
use events_schema::payments::PaymentRefundedV1;
use order_saga::Compensation;
use sqlx::PgConnection;
use uuid::Uuid;

pub(crate) struct Refund;

impl Compensation for Refund {
    type Undone = PaymentRefundedV1;

    async fn undo(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
    ) -> Result<Option<PaymentRefundedV1>, HandlerError> {
        let refunded: Option<(Uuid, i64, String)> = sqlx::query_as(
            "UPDATE payments SET status = 'refunded', updated_at = now()
             WHERE order_id = $1 AND status = 'captured' RETURNING id, amount_cents, currency",
        )
        .bind(order_id)
        .fetch_optional(tx)
        .await?;
        Ok(
            refunded.map(|(payment_id, amount_cents, currency)| PaymentRefundedV1 {
                order_id,
                payment_id,
                amount_cents,
                currency,
            }),
        )
    }
}
