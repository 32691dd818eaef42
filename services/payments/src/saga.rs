//! Charging and refunding, keyed by order: at most one payment per order, whatever is
//! redelivered or reordered.

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::inventory::InventoryReservedV1;
use events_schema::payments::{
    DeclineReason, PaymentCapturedV1, PaymentDeclinedV1, PaymentRefundedV1,
};
use order_saga::Compensation;
use sqlx::PgConnection;
use uuid::Uuid;

/// On `inventory.reserved`: charge the order's total, or decline it.
pub(crate) struct Charge;

impl EventHandler for Charge {
    type Event = InventoryReservedV1;

    /// The order, like its cancellation; and the user, so that one user's charges are
    /// decided one at a time.
    fn keys(&self, reserved: &InventoryReservedV1, _meta: &EventMeta) -> Vec<String> {
        let mut keys = vec![order_saga::order_key(reserved.order_id)];
        keys.extend(reserved.user_id.map(|user_id| format!("user:{user_id}")));
        keys
    }

    async fn handle(
        &self,
        reserved: InventoryReservedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let order_id = reserved.order_id;
        let (Some(user_id), Some(amount), Some(currency)) =
            (reserved.user_id, reserved.total_cents, reserved.currency)
        else {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "inventory.reserved for order {order_id} carries no user_id, total_cents and currency to charge"
            )));
        };
        let tx = ctx.tx();
        let charged: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payments WHERE order_id = $1)")
                .bind(order_id)
                .fetch_one(&mut *tx)
                .await?;
        if charged || order_saga::is_cancelled(tx, order_id).await? {
            // Charged or declined already, or cancelled before the charge: nothing to do.
            return Ok(());
        }
        let user: Option<(Option<i64>, Option<String>, bool)> = sqlx::query_as(
            "SELECT credit_limit_cents, currency, active FROM users_cache WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let decline = match user {
            // The order passed the orders service's own copy, so this one is behind: retry.
            None | Some((None, _, true)) => {
                return Err(HandlerError::transient(anyhow::anyhow!(
                    "user {user_id} is not in the payments copy of users yet"
                )));
            }
            Some((_, _, false)) => Some(DeclineReason::UserDeactivated),
            Some((Some(limit), Some(limit_currency), true))
                if limit_currency == currency && amount <= limit =>
            {
                None
            }
            Some(_) => Some(DeclineReason::CreditLimitExceeded),
        };
        let payment_id = Uuid::now_v7();
        let status = if decline.is_some() {
            "declined"
        } else {
            "captured"
        };
        sqlx::query(
            "INSERT INTO payments (id, order_id, user_id, amount_cents, currency, status, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(payment_id)
        .bind(order_id)
        .bind(user_id)
        .bind(amount)
        .bind(&currency)
        .bind(status)
        .bind(decline.map(events_schema::wire_name))
        .execute(&mut *tx)
        .await?;
        match decline {
            None => {
                let captured = PaymentCapturedV1 {
                    order_id,
                    payment_id,
                    user_id,
                    amount_cents: amount,
                    currency,
                };
                ctx.emit(order_id, &captured).await
            }
            Some(reason) => {
                let declined = PaymentDeclinedV1 {
                    order_id,
                    user_id,
                    amount_cents: amount,
                    currency,
                    reason,
                };
                ctx.emit(order_id, &declined).await
            }
        }
    }
}

/// On `order.cancelled`: refund a captured payment (`payment.refunded`).
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
