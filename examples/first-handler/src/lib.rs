//! The book's first handler (*Test a handler*), compiled and tested here so the book cannot
//! go stale: the book includes the blocks between `ANCHOR` comments.

// ANCHOR: handler
use conveyor::{Consumer, ConsumerSetupError, Event, EventHandler, HandlerContext, HandlerError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The data of `order.created` v1; its type is named once, here.
#[derive(Clone, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub sku: String,
    pub quantity: i32,
}

impl Event for OrderCreated {
    const TYPE: &'static str = "order.created";
}

#[derive(Clone, Serialize, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
}

impl Event for StockReserved {
    const TYPE: &'static str = "stock.reserved";
}

/// On `order.created`: takes the stock and says so, in one transaction.
pub struct ReserveStock;

impl EventHandler for ReserveStock {
    type Event = OrderCreated;

    async fn handle(
        &self,
        order: OrderCreated,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        sqlx::query("UPDATE stock SET available = available - $1 WHERE sku = $2")
            .bind(order.quantity)
            .bind(&order.sku)
            .execute(ctx.tx())
            .await?;
        // Written to the outbox in this transaction; the relay publishes it after the commit.
        let reserved = StockReserved {
            order_id: order.order_id,
        };
        ctx.emit(order.order_id, &reserved).await
    }
}

/// The service's consumer. Its name is its queue's and its inbox's: renaming it would
/// handle every event again.
pub fn consumer() -> Result<Consumer, ConsumerSetupError> {
    Consumer::builder("stock").handler(ReserveStock).build()
}
// ANCHOR_END: handler

/// The service's tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
