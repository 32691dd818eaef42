//! The cached copy of products: price and currency. A change applies only if its version is
//! newer than the one held, so reordering never regresses the cached copy.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::products::{ProductCreatedV1, ProductUpdatedV1};

async fn product(
    ctx: &mut HandlerContext<'_>,
    sku: &str,
    price_cents: i64,
    currency: &str,
    version: i64,
) -> Result<(), HandlerError> {
    let applied = sqlx::query(
        "INSERT INTO products_cache (sku, price_cents, currency, version) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sku) DO UPDATE SET price_cents = EXCLUDED.price_cents, currency = EXCLUDED.currency,
             version = EXCLUDED.version
         WHERE products_cache.version < EXCLUDED.version",
    )
    .bind(sku)
    .bind(price_cents)
    .bind(currency)
    .bind(version)
    .execute(ctx.tx())
    .await?
    .rows_affected();
    platform::copy_updated(ctx, "products", applied);
    Ok(())
}

pub(crate) struct Created;

impl EventHandler for Created {
    type Event = ProductCreatedV1;
    async fn handle(
        &self,
        event: ProductCreatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        product(
            ctx,
            &event.sku,
            event.price_cents,
            &event.currency,
            event.version,
        )
        .await
    }
}

pub(crate) struct Updated;

impl EventHandler for Updated {
    type Event = ProductUpdatedV1;
    async fn handle(
        &self,
        event: ProductUpdatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        product(
            ctx,
            &event.sku,
            event.price_cents,
            &event.currency,
            event.version,
        )
        .await
    }
}
