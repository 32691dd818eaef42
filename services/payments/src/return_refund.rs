//! On `return.closed`: refund the returned lines to the user's balance
//! (`payment.return-refunded`), once per return, never more than the order's payment.

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::payments::PaymentReturnRefundedV1;
use events_schema::returns::ReturnClosedV1;
use uuid::Uuid;

pub(crate) struct RefundReturn;

impl EventHandler for RefundReturn {
    type Event = ReturnClosedV1;

    /// The return, and the order, whose payment it changes.
    fn keys(&self, closed: &ReturnClosedV1, _meta: &EventMeta) -> Vec<String> {
        vec![
            flows::run_key(closed.return_id),
            order_saga::order_key(closed.order_id),
        ]
    }

    async fn handle(
        &self,
        closed: ReturnClosedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        // Recorded and taken off the balance in one statement; nothing when refunded already
        // or beyond what was captured (the payment's check holds that too).
        let refunded: Option<Uuid> = sqlx::query_scalar(
            "WITH payment AS (
                 UPDATE payments SET returned_cents = returned_cents + $3, updated_at = now()
                 WHERE order_id = $2 AND status = 'captured' AND currency = $4
                   AND returned_cents + $3 <= amount_cents
                   AND NOT EXISTS (SELECT 1 FROM return_refunds WHERE return_id = $1)
                 RETURNING id)
             INSERT INTO return_refunds (return_id, order_id, payment_id, amount_cents, currency)
             SELECT $1, $2, id, $3, $4 FROM payment RETURNING payment_id",
        )
        .bind(closed.return_id)
        .bind(closed.order_id)
        .bind(closed.refund_cents)
        .bind(&closed.currency)
        .fetch_optional(ctx.tx())
        .await?;
        let Some(payment_id) = refunded else {
            return nothing_to_refund(ctx, &closed).await;
        };
        let event = PaymentReturnRefundedV1 {
            return_id: closed.return_id,
            order_id: closed.order_id,
            payment_id,
            amount_cents: closed.refund_cents,
            currency: closed.currency,
        };
        ctx.emit(closed.return_id, &event).await
    }
}

/// Refunded already is done; anything else is money that does not add up, which an
/// operator must see (dead-lettered with why), never a silent drop.
async fn nothing_to_refund(
    ctx: &mut HandlerContext<'_>,
    closed: &ReturnClosedV1,
) -> Result<(), HandlerError> {
    let done: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM return_refunds WHERE return_id = $1)")
            .bind(closed.return_id)
            .fetch_one(ctx.tx())
            .await?;
    if done {
        return Ok(());
    }
    Err(HandlerError::permanent(anyhow::anyhow!(
        "return {} asks {} {} back of order {}, which has no captured payment in that currency with that much left to refund",
        closed.return_id,
        closed.refund_cents,
        closed.currency,
        closed.order_id
    )))
}
