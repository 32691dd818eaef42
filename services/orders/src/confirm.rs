//! On `shipment.scheduled`: confirm the order (`order.confirmed`), the saga's last step, and
//! take back its deadline. A shipment for an order that already ended changes nothing here;
//! shipping cancels it on `order.cancelled`.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::orders::OrderDeadlinePassedV1;
use events_schema::shipping::ShipmentScheduledV1;

use crate::order;

pub(crate) struct ShipmentScheduled;

impl EventHandler for ShipmentScheduled {
    type Event = ShipmentScheduledV1;

    async fn handle(
        &self,
        scheduled: ShipmentScheduledV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        match order::confirm(ctx.tx(), scheduled.order_id).await? {
            Some(order::Ended { event, outcome }) => {
                ctx.after_commit(move || outcome.record());
                ctx.cancel_scheduled::<OrderDeadlinePassedV1>(scheduled.order_id)
                    .await?;
                ctx.emit(scheduled.order_id, &event).await
            }
            None => Ok(()),
        }
    }
}
