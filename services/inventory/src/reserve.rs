//! On `order.created`: reserve every item of the order, or none (`inventory.reserved` or
//! `inventory.rejected`). The handler runs in the consumer's transaction, so the stock it
//! takes and the event it emits commit together, once.

use std::collections::BTreeMap;

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::inventory::{InventoryRejectedV1, InventoryReservedV1, Item, RejectReason};
use events_schema::orders::OrderCreatedV1;
use sqlx::PgConnection;
use uuid::Uuid;

/// The key of one product's stock: every change to it is decided one at a time.
pub(crate) fn product_key(sku: &str) -> String {
    format!("sku:{sku}")
}

pub(crate) struct ReserveStock;

impl EventHandler for ReserveStock {
    type Event = OrderCreatedV1;

    /// The order, like its cancellation; and each product, so reservations of one product
    /// are decided one at a time, with their locks taken in one order everywhere.
    fn keys(&self, order: &OrderCreatedV1, _meta: &EventMeta) -> Vec<String> {
        let mut keys = vec![order_saga::order_key(order.order_id)];
        keys.extend(order.items.iter().map(|item| product_key(&item.sku)));
        keys
    }

    async fn handle(
        &self,
        order: OrderCreatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let items = by_sku(
            order
                .items
                .iter()
                .map(|item| (item.sku.as_str(), item.quantity)),
        );
        let tx = ctx.tx();
        let Some(free) = lock_stock(tx, order.order_id, &items).await? else {
            // Acted on already, or cancelled before it got here: nothing to reserve.
            return Ok(());
        };
        match decide(&items, &free) {
            Decision::Reserve => {
                take(tx, order.order_id, &items).await?;
                let reserved = InventoryReservedV1 {
                    order_id: order.order_id,
                    items,
                    user_id: Some(order.user_id),
                    total_cents: Some(order.total_cents),
                    currency: Some(order.currency),
                };
                ctx.emit(order.order_id, &reserved).await
            }
            Decision::Reject(reason, skus) => {
                record_rejection(tx, order.order_id, &items).await?;
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

/// What to do with an order, given what is free of each of its products.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Reserve,
    /// Take nothing; the products named are unknown, or short, for the reason given.
    Reject(RejectReason, Vec<String>),
}

fn decide(items: &[Item], free: &BTreeMap<String, i32>) -> Decision {
    let unknown: Vec<String> = items
        .iter()
        .filter(|item| !free.contains_key(&item.sku))
        .map(|item| item.sku.clone())
        .collect();
    if !unknown.is_empty() {
        return Decision::Reject(RejectReason::UnknownSku, unknown);
    }
    let short: Vec<String> = items
        .iter()
        .filter(|item| {
            free.get(&item.sku)
                .is_some_and(|free| *free < item.quantity)
        })
        .map(|item| item.sku.clone())
        .collect();
    if short.is_empty() {
        Decision::Reserve
    } else {
        Decision::Reject(RejectReason::InsufficientStock, short)
    }
}

/// One line per product, quantities added up, sorted by sku: each product is checked
/// against its stock once, and rows are locked in one order everywhere.
pub(crate) fn by_sku<'a>(lines: impl IntoIterator<Item = (&'a str, i32)>) -> Vec<Item> {
    let mut quantities: BTreeMap<&str, i32> = BTreeMap::new();
    for (sku, quantity) in lines {
        let total = quantities.entry(sku).or_default();
        *total = total.saturating_add(quantity);
    }
    quantities
        .into_iter()
        .map(|(sku, quantity)| Item {
            sku: sku.to_owned(),
            quantity,
        })
        .collect()
}

/// Locks the order's products and reads what is free of each, in one round trip; `None`
/// when this service already settled the order (reserved, rejected, or saw it cancelled).
async fn lock_stock(
    tx: &mut PgConnection,
    order_id: Uuid,
    items: &[Item],
) -> Result<Option<BTreeMap<String, i32>>, sqlx::Error> {
    const LOCK_UNLESS_SETTLED: &str = concat!(
        "SELECT sku, stock - reserved FROM products WHERE sku = ANY($2) AND NOT (",
        order_saga::settled_condition!("EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)"),
        ") ORDER BY sku FOR UPDATE"
    );
    const SETTLED: &str =
        order_saga::settled_query!("EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)");
    let skus: Vec<&str> = items.iter().map(|item| item.sku.as_str()).collect();
    let free: BTreeMap<String, i32> = sqlx::query_as(LOCK_UNLESS_SETTLED)
        .bind(order_id)
        .bind(&skus)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    // No row: settled, or none of the products exists; only then a second look tells.
    if free.is_empty() && order_saga::is_settled(tx, order_id, SETTLED).await? {
        return Ok(None);
    }
    Ok(Some(free))
}

/// Takes the quantities from stock and records the reservation, in one statement.
async fn take(tx: &mut PgConnection, order_id: Uuid, items: &[Item]) -> Result<(), sqlx::Error> {
    let skus: Vec<&str> = items.iter().map(|item| item.sku.as_str()).collect();
    let quantities: Vec<i32> = items.iter().map(|item| item.quantity).collect();
    sqlx::query(
        "WITH taken AS (
             UPDATE products AS p SET reserved = p.reserved + i.quantity
             FROM unnest($2::text[], $3::int[]) AS i(sku, quantity) WHERE p.sku = i.sku)
         INSERT INTO reservations (order_id, status, items) VALUES ($1, 'reserved', $4)",
    )
    .bind(order_id)
    .bind(&skus)
    .bind(&quantities)
    .bind(sqlx::types::Json(items))
    .execute(tx)
    .await
    .map(drop)
}

async fn record_rejection(
    tx: &mut PgConnection,
    order_id: Uuid,
    items: &[Item],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO reservations (order_id, status, items) VALUES ($1, 'rejected', $2)")
        .bind(order_id)
        .bind(sqlx::types::Json(items))
        .execute(tx)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, quantity: i32) -> Item {
        Item {
            sku: sku.to_owned(),
            quantity,
        }
    }

    fn free(stock: &[(&str, i32)]) -> BTreeMap<String, i32> {
        stock
            .iter()
            .map(|(sku, n)| ((*sku).to_owned(), *n))
            .collect()
    }

    #[test]
    fn an_order_within_stock_is_reserved_whole() {
        let items = [item("MUG", 2), item("TEA", 5)];
        assert_eq!(
            decide(&items, &free(&[("MUG", 2), ("TEA", 9)])),
            Decision::Reserve
        );
    }

    #[test]
    fn unknown_products_are_named_before_short_ones() {
        let items = [item("MUG", 20), item("LAMP", 1)];
        assert_eq!(
            decide(&items, &free(&[("MUG", 2)])),
            Decision::Reject(RejectReason::UnknownSku, vec!["LAMP".into()])
        );
    }

    #[test]
    fn every_short_product_is_named_and_nothing_is_taken() {
        let items = [item("MUG", 3), item("PEN", 1), item("TEA", 10)];
        assert_eq!(
            decide(&items, &free(&[("MUG", 2), ("PEN", 5), ("TEA", 9)])),
            Decision::Reject(
                RejectReason::InsufficientStock,
                vec!["MUG".into(), "TEA".into()]
            )
        );
    }

    #[test]
    fn lines_of_one_product_are_added_up_before_the_check() {
        let order = OrderCreatedV1 {
            items: vec![
                events_schema::orders::PricedItem {
                    sku: "MUG".into(),
                    quantity: 6,
                    unit_price_cents: 100,
                },
                events_schema::orders::PricedItem {
                    sku: "MUG".into(),
                    quantity: 6,
                    unit_price_cents: 100,
                },
            ],
            ..<OrderCreatedV1 as events_schema::EventData>::sample()
        };
        let items = by_sku(
            order
                .items
                .iter()
                .map(|item| (item.sku.as_str(), item.quantity)),
        );
        assert_eq!(items, [item("MUG", 12)]);
        assert_eq!(
            decide(&items, &free(&[("MUG", 10)])),
            Decision::Reject(RejectReason::InsufficientStock, vec!["MUG".into()])
        );
    }
}
