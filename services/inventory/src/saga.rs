//! Reservations: reserve stock for a new order, release it when the order is cancelled.
//! Each handler runs in the consumer's transaction, so its effects and the events it emits
//! commit together, once.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::EventData;
use events_schema::inventory::{
    InventoryRejectedV1, InventoryReleasedV1, InventoryReservedV1, Item, RejectReason,
};
use events_schema::orders::{OrderCancelledV1, OrderCreatedV1};
use sqlx::PgConnection;
use uuid::Uuid;

/// On `order.created`: reserve every item, or none.
pub(crate) struct ReserveStock;

impl EventHandler for ReserveStock {
    type Event = OrderCreatedV1;

    fn event_type(&self) -> &'static str {
        OrderCreatedV1::TYPE
    }

    async fn handle(
        &self,
        order: OrderCreatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let tx = ctx.tx();
        let already: Option<bool> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)
                 OR EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)",
        )
        .bind(order.order_id)
        .fetch_one(&mut *tx)
        .await?;
        if already == Some(true) {
            // Acted on already, or cancelled before it got here: nothing to reserve.
            return Ok(());
        }
        let mut items: Vec<Item> = order
            .items
            .iter()
            .map(|item| Item {
                sku: item.sku.clone(),
                quantity: item.quantity,
            })
            .collect();
        // Rows locked in one order everywhere, so concurrent reservations cannot deadlock.
        items.sort_by(|a, b| a.sku.cmp(&b.sku));
        match reserve(tx, &items).await? {
            Ok(()) => {
                record(tx, order.order_id, "reserved", &items).await?;
                let reserved = InventoryReservedV1 {
                    order_id: order.order_id,
                    items,
                    user_id: Some(order.user_id),
                    total_cents: Some(order.total_cents),
                    currency: Some(order.currency),
                };
                events_schema::emit(ctx, order.order_id, &reserved).await
            }
            Err((reason, skus)) => {
                record(tx, order.order_id, "rejected", &items).await?;
                let rejected = InventoryRejectedV1 {
                    order_id: order.order_id,
                    reason,
                    skus,
                };
                events_schema::emit(ctx, order.order_id, &rejected).await
            }
        }
    }
}

/// Takes the quantities from available stock; on a shortfall, takes nothing and names the
/// items short, with why.
async fn reserve(
    tx: &mut PgConnection,
    items: &[Item],
) -> Result<Result<(), (RejectReason, Vec<String>)>, HandlerError> {
    let skus: Vec<&str> = items.iter().map(|item| item.sku.as_str()).collect();
    let available: Vec<(String, i32)> = sqlx::query_as(
        "SELECT sku, stock - reserved FROM products WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
    )
    .bind(&skus)
    .fetch_all(&mut *tx)
    .await?;
    let unknown: Vec<String> = items
        .iter()
        .filter(|item| !available.iter().any(|(sku, _)| *sku == item.sku))
        .map(|item| item.sku.clone())
        .collect();
    if !unknown.is_empty() {
        return Ok(Err((RejectReason::UnknownSku, unknown)));
    }
    let short: Vec<String> = items
        .iter()
        .filter(|item| {
            available
                .iter()
                .any(|(sku, free)| *sku == item.sku && *free < item.quantity)
        })
        .map(|item| item.sku.clone())
        .collect();
    if !short.is_empty() {
        return Ok(Err((RejectReason::InsufficientStock, short)));
    }
    for item in items {
        sqlx::query("UPDATE products SET reserved = reserved + $2 WHERE sku = $1")
            .bind(&item.sku)
            .bind(item.quantity)
            .execute(&mut *tx)
            .await?;
    }
    Ok(Ok(()))
}

async fn record(
    tx: &mut PgConnection,
    order_id: Uuid,
    status: &str,
    items: &[Item],
) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO reservations (order_id, status, items) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(status)
        .bind(sqlx::types::Json(items))
        .execute(tx)
        .await?;
    Ok(())
}

/// On `order.cancelled`: release what was reserved for it, if anything.
pub(crate) struct ReleaseStock;

impl EventHandler for ReleaseStock {
    type Event = OrderCancelledV1;

    fn event_type(&self) -> &'static str {
        OrderCancelledV1::TYPE
    }

    async fn handle(
        &self,
        cancelled: OrderCancelledV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let tx = ctx.tx();
        sqlx::query("INSERT INTO cancelled_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(cancelled.order_id)
            .execute(&mut *tx)
            .await?;
        let released: Option<sqlx::types::Json<Vec<Item>>> = sqlx::query_scalar(
            "UPDATE reservations SET status = 'released' WHERE order_id = $1 AND status = 'reserved' RETURNING items",
        )
        .bind(cancelled.order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(sqlx::types::Json(items)) = released else {
            return Ok(());
        };
        for item in &items {
            sqlx::query("UPDATE products SET reserved = reserved - $2 WHERE sku = $1")
                .bind(&item.sku)
                .bind(item.quantity)
                .execute(&mut *tx)
                .await?;
        }
        let event = InventoryReleasedV1 {
            order_id: cancelled.order_id,
            items,
        };
        events_schema::emit(ctx, cancelled.order_id, &event).await
    }
}
