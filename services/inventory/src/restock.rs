//! On `return.closed`: put the returned lines back in stock, for sale again
//! (`inventory.restocked`). Only a closed return is restocked: once sold again, stock could
//! not be taken back if the return were cancelled.

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::inventory::InventoryRestockedV1;
use events_schema::returns::ReturnClosedV1;

use crate::reserve::{by_sku, product_key};

pub(crate) struct Restock;

impl EventHandler for Restock {
    type Event = ReturnClosedV1;

    /// The return, and each product, as a reservation takes them.
    fn keys(&self, closed: &ReturnClosedV1, _meta: &EventMeta) -> Vec<String> {
        let mut keys = vec![flows::run_key(closed.return_id)];
        keys.extend(closed.lines.iter().map(|line| product_key(&line.sku)));
        keys
    }

    async fn handle(
        &self,
        closed: ReturnClosedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let items = by_sku(
            closed
                .lines
                .iter()
                .map(|line| (line.sku.as_str(), line.quantity)),
        );
        let skus: Vec<&str> = items.iter().map(|item| item.sku.as_str()).collect();
        let quantities: Vec<i32> = items.iter().map(|item| item.quantity).collect();
        // The units sold come back: no longer held for the order. Recorded once per return.
        let restocked = sqlx::query(
            "WITH recorded AS (
                 INSERT INTO restocks (return_id, order_id, items) VALUES ($1, $2, $5)
                 ON CONFLICT DO NOTHING RETURNING return_id)
             UPDATE products AS p SET reserved = p.reserved - i.quantity
             FROM unnest($3::text[], $4::int[]) AS i(sku, quantity), recorded
             WHERE p.sku = i.sku",
        )
        .bind(closed.return_id)
        .bind(closed.order_id)
        .bind(&skus)
        .bind(&quantities)
        .bind(sqlx::types::Json(&items))
        .execute(ctx.tx())
        .await?;
        if restocked.rows_affected() == 0 {
            // Restocked already.
            return Ok(());
        }
        let event = InventoryRestockedV1 {
            return_id: closed.return_id,
            order_id: closed.order_id,
            items,
        };
        ctx.emit(closed.return_id, &event).await
    }
}
