//! On `order.confirmed`: grant the customer a reward for it.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::orders::OrderConfirmedV1;
use uuid::Uuid;

use crate::events::RewardGrantedV1;

pub(crate) struct OnOrderConfirmed;

impl EventHandler for OnOrderConfirmed {
    type Event = OrderConfirmedV1;

    async fn handle(
        &self,
        confirmed: OrderConfirmedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        crate::received::record(ctx).await?;
        let granted = RewardGrantedV1 {
            reward_id: Uuid::now_v7(),
        };
        // Checked against the service's own schema, as Conveyor's types are against theirs.
        ctx.emit(confirmed.order_id, &granted).await
    }
}
