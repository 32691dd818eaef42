//! On `order.confirmed`: tell the customer their order is confirmed.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::notifications::NotificationSentV1;
use events_schema::orders::OrderConfirmedV1;
use uuid::Uuid;

pub(crate) struct OnOrderConfirmed;

impl EventHandler for OnOrderConfirmed {
    type Event = OrderConfirmedV1;

    async fn handle(
        &self,
        confirmed: OrderConfirmedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        crate::received::record(ctx).await?;
        // ANCHOR: emit
        let sent = NotificationSentV1 {
            notification_id: Uuid::now_v7(),
        };
        // In the handler's transaction: sent once the inbox row and the record commit.
        ctx.emit(confirmed.order_id, &sent).await
        // ANCHOR_END: emit
    }
}
