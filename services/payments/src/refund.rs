//! On `order.cancelled`: refund a captured payment (`payment.refunded`), which gives the
//! amount back to the user's balance.

use conveyor::{HandlerContext, HandlerError};
use events_schema::orders::OrderCancelledV1;
use events_schema::payments::PaymentRefundedV1;
use flows::{Compensate, FailedRuns};
use uuid::Uuid;

pub(crate) struct Refund;

impl Compensate for Refund {
    type Failure = OrderCancelledV1;
    type Undone = PaymentRefundedV1;

    const FAILED_RUNS: FailedRuns = order_saga::CANCELLED_ORDERS;

    fn run_id(cancelled: &OrderCancelledV1) -> Uuid {
        cancelled.order_id
    }

    async fn undo(
        &self,
        ctx: &mut HandlerContext<'_>,
        order_id: Uuid,
    ) -> Result<Option<PaymentRefundedV1>, HandlerError> {
        let refunded: Option<(Uuid, i64, String)> = sqlx::query_as(
            "UPDATE payments SET status = 'refunded', updated_at = now()
             WHERE order_id = $1 AND status = 'captured' RETURNING id, amount_cents, currency",
        )
        .bind(order_id)
        .fetch_optional(ctx.tx())
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
