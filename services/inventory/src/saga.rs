//! Reservations: reserve stock for a new order, release it when the order is cancelled.
//! Each handler runs in the consumer's transaction, so its effects and the events it emits
//! commit together, once.

use std::collections::BTreeMap;

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::inventory::{
    InventoryRejectedV1, InventoryReleasedV1, InventoryReservedV1, Item, RejectReason,
};
use events_schema::orders::OrderCreatedV1;
use order_saga::Compensation;
use sqlx::PgConnection;
use uuid::Uuid;

/// On `order.created`: reserve every item, or none.
pub(crate) struct ReserveStock;

impl EventHandler for ReserveStock {
    type Event = OrderCreatedV1;

    /// The order, like its cancellation; and each product, so reservations of one product
    /// are decided one at a time, with their locks taken in one order everywhere.
    fn keys(&self, order: &OrderCreatedV1, _meta: &EventMeta) -> Vec<String> {
        let mut keys = vec![order_saga::order_key(order.order_id)];
        keys.extend(order.items.iter().map(|item| format!("sku:{}", item.sku)));
        keys
    }

    async fn handle(
        &self,
        order: OrderCreatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let tx = ctx.tx();
        let acted: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)")
                .bind(order.order_id)
                .fetch_one(&mut *tx)
                .await?;
        if acted || order_saga::is_cancelled(tx, order.order_id).await? {
            // Acted on already, or cancelled before it got here: nothing to reserve.
            return Ok(());
        }
        let items = items_by_sku(&order);
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
                ctx.emit(order.order_id, &reserved).await
            }
            Err((reason, skus)) => {
                record(tx, order.order_id, "rejected", &items).await?;
                let rejected = InventoryRejectedV1 {
                    order_id: order.order_id,
                    reason,
                    skus,
                };
                ctx.emit(order.order_id, &rejected).await
            }
        }
    }
}

/// One line per product, quantities added up, sorted by sku: each product is checked
/// against its stock once for the whole order, and rows are locked in one order everywhere.
fn items_by_sku(order: &OrderCreatedV1) -> Vec<Item> {
    let mut quantities: BTreeMap<&str, i32> = BTreeMap::new();
    for item in &order.items {
        let quantity = quantities.entry(item.sku.as_str()).or_default();
        *quantity = quantity.saturating_add(item.quantity);
    }
    quantities
        .into_iter()
        .map(|(sku, quantity)| Item {
            sku: sku.to_owned(),
            quantity,
        })
        .collect()
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

/// On `order.cancelled`: release what was reserved for it (`inventory.released`).
pub(crate) struct ReleaseStock;

impl Compensation for ReleaseStock {
    type Undone = InventoryReleasedV1;

    async fn undo(
        &self,
        tx: &mut PgConnection,
        order_id: Uuid,
    ) -> Result<Option<InventoryReleasedV1>, HandlerError> {
        let released: Option<sqlx::types::Json<Vec<Item>>> = sqlx::query_scalar(
            "UPDATE reservations SET status = 'released' WHERE order_id = $1 AND status = 'reserved' RETURNING items",
        )
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(sqlx::types::Json(items)) = released else {
            return Ok(None);
        };
        for item in &items {
            sqlx::query("UPDATE products SET reserved = reserved - $2 WHERE sku = $1")
                .bind(&item.sku)
                .bind(item.quantity)
                .execute(&mut *tx)
                .await?;
        }
        Ok(Some(InventoryReleasedV1 { order_id, items }))
    }
}
