//! On a step's refusal (`inventory.rejected`, `payment.declined`, `shipment.failed`) or the
//! order's own deadline (`order.deadline-passed`): cancel the order with its reason
//! (`order.cancelled`), taking back its deadline. A refusal or a deadline for an order that
//! already ended changes nothing here; the services that acted compensate on `order.cancelled`.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::inventory::InventoryRejectedV1;
use events_schema::orders::{CancelReason, OrderDeadlinePassedV1};
use events_schema::payments::PaymentDeclinedV1;
use events_schema::shipping::ShipmentFailedV1;
use uuid::Uuid;

use crate::order;

async fn cancel(
    ctx: &mut HandlerContext<'_>,
    order_id: Uuid,
    reason: CancelReason,
    detail: String,
) -> Result<(), HandlerError> {
    match order::cancel(ctx.tx(), order_id, reason, detail).await? {
        Some(order::Ended { event, outcome }) => {
            ctx.after_commit(move || outcome.record());
            // When the deadline ended it, its event is the one being handled: out of the
            // schedule already.
            if reason != CancelReason::DeadlinePassed {
                ctx.cancel_scheduled::<OrderDeadlinePassedV1>(order_id)
                    .await?;
            }
            ctx.emit(order_id, &event).await
        }
        None => Ok(()),
    }
}

/// `names` joined with commas, as many as fit in about `max_chars`, then how many more.
fn name_some(names: &[String], max_chars: usize) -> String {
    let mut text = String::new();
    for (shown, name) in names.iter().enumerate() {
        if shown > 0 && text.chars().count() + name.chars().count() + 2 > max_chars {
            return format!("{text}, … (+{} more)", names.len() - shown);
        }
        if shown > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
    }
    text
}

pub(crate) struct InventoryRejected;

impl EventHandler for InventoryRejected {
    type Event = InventoryRejectedV1;

    async fn handle(
        &self,
        rejected: InventoryRejectedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let detail = format!(
            "{}: {}",
            events_schema::wire_name(rejected.reason),
            name_some(&rejected.skus, 400)
        );
        cancel(
            ctx,
            rejected.order_id,
            CancelReason::InventoryRejected,
            detail,
        )
        .await
    }
}

pub(crate) struct PaymentDeclined;

impl EventHandler for PaymentDeclined {
    type Event = PaymentDeclinedV1;

    async fn handle(
        &self,
        declined: PaymentDeclinedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let detail = format!(
            "{}: {} {}",
            events_schema::wire_name(declined.reason),
            declined.amount_cents,
            declined.currency
        );
        cancel(
            ctx,
            declined.order_id,
            CancelReason::PaymentDeclined,
            detail,
        )
        .await
    }
}

pub(crate) struct ShipmentFailed;

impl EventHandler for ShipmentFailed {
    type Event = ShipmentFailedV1;

    async fn handle(
        &self,
        failed: ShipmentFailedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let detail = format!(
            "{}: {}",
            events_schema::wire_name(failed.reason),
            failed.country.unwrap_or_default()
        );
        cancel(ctx, failed.order_id, CancelReason::ShipmentFailed, detail).await
    }
}

pub(crate) struct DeadlinePassed;

impl EventHandler for DeadlinePassed {
    type Event = OrderDeadlinePassedV1;

    async fn handle(
        &self,
        passed: OrderDeadlinePassedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let timeout = std::time::Duration::from_millis(passed.timeout_ms);
        let detail = format!("no answer within {timeout:?}");
        cancel(ctx, passed.order_id, CancelReason::DeadlinePassed, detail).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{MAX_DETAIL_CHARS, fit_detail};

    #[test]
    fn a_rejection_naming_a_hundred_skus_fits_the_schema() {
        let skus: Vec<String> = (0..100)
            .map(|n| format!("WAREHOUSE-SKU-WITH-A-LONG-NAME-{n:03}"))
            .collect();
        let detail = format!("insufficient-stock: {}", name_some(&skus, 400));
        assert!(detail.chars().count() <= MAX_DETAIL_CHARS, "{detail}");
        assert!(detail.starts_with("insufficient-stock: WAREHOUSE-SKU-WITH-A-LONG-NAME-000, "));
        assert!(detail.ends_with(" more)"), "{detail}");
        assert_eq!(
            name_some(&skus[..2], 400),
            format!("{}, {}", skus[0], skus[1])
        );
    }

    #[test]
    fn any_detail_is_cut_to_the_schema() {
        let long = "é".repeat(2000);
        let cut = fit_detail(long);
        assert_eq!(cut.chars().count(), MAX_DETAIL_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(fit_detail("short".into()), "short");
    }
}
