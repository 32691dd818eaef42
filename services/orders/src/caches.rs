//! The cached copies of users (active or not) and products (price, currency). A change
//! applies only if its version is newer than the one held; a deactivation also wins a tie
//! (a republish sends a deactivated user's state and its deactivation at one version).

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::products::{ProductCreatedV1, ProductUpdatedV1};
use events_schema::users::{UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use uuid::Uuid;

async fn user(
    ctx: &mut HandlerContext<'_>,
    user_id: Uuid,
    active: bool,
    version: i64,
) -> Result<(), HandlerError> {
    let applied = sqlx::query(
        "INSERT INTO users_cache (user_id, active, version) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET active = EXCLUDED.active, version = EXCLUDED.version
         WHERE users_cache.version < EXCLUDED.version
            OR (users_cache.version = EXCLUDED.version AND NOT EXCLUDED.active)",
    )
    .bind(user_id)
    .bind(active)
    .bind(version)
    .execute(ctx.tx())
    .await?
    .rows_affected();
    ctx.copy_updated("users", applied);
    Ok(())
}

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
    ctx.copy_updated("products", applied);
    Ok(())
}

pub(crate) struct UserRegistered;

impl EventHandler for UserRegistered {
    type Event = UserRegisteredV1;
    async fn handle(
        &self,
        event: UserRegisteredV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        user(ctx, event.user_id, true, event.version).await
    }
}

pub(crate) struct UserUpdated;

impl EventHandler for UserUpdated {
    type Event = UserUpdatedV1;
    async fn handle(
        &self,
        event: UserUpdatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        user(ctx, event.user_id, true, event.version).await
    }
}

pub(crate) struct UserDeactivated;

impl EventHandler for UserDeactivated {
    type Event = UserDeactivatedV1;
    async fn handle(
        &self,
        event: UserDeactivatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        user(ctx, event.user_id, false, event.version).await
    }
}

pub(crate) struct ProductCreated;

impl EventHandler for ProductCreated {
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

pub(crate) struct ProductUpdated;

impl EventHandler for ProductUpdated {
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
