//! The other services' answers: one cancels the order with its reason, or the shipment
//! confirms it. Answers for an order that already ended change nothing here; the services
//! that acted compensate on `order.cancelled`.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::inventory::InventoryRejectedV1;
use events_schema::orders::CancelReason;
use events_schema::payments::PaymentDeclinedV1;
use events_schema::shipping::{ShipmentFailedV1, ShipmentScheduledV1};
use uuid::Uuid;

use crate::order;

async fn cancel(
    ctx: &mut HandlerContext<'_>,
    order_id: Uuid,
    reason: CancelReason,
    detail: String,
) -> Result<(), HandlerError> {
    match order::cancel(ctx.tx(), order_id, reason, detail).await? {
        Some(cancelled) => ctx.emit(order_id, &cancelled).await,
        None => Ok(()),
    }
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
            rejected.skus.join(", ")
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

pub(crate) struct ShipmentScheduled;

impl EventHandler for ShipmentScheduled {
    type Event = ShipmentScheduledV1;

    async fn handle(
        &self,
        scheduled: ShipmentScheduledV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        match order::confirm(ctx.tx(), scheduled.order_id).await? {
            Some(confirmed) => ctx.emit(scheduled.order_id, &confirmed).await,
            None => Ok(()),
        }
    }
}
