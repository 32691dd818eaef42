//! The cached copy of users' addresses. A change applies only if its version is newer than
//! the one held, so reordering never regresses the copy. One exception: a `user.deactivated`
//! that overtakes the user's registration leaves a row with no address, and the older
//! registration still fills that in (it is the only address there is), keeping the newer
//! version and `active = false`. Without it, every payment of that user would walk the retry
//! tiers waiting for an address that no newer event will ever bring. And a deactivation wins
//! a tie of versions: a republish sends a deactivated user's state and its deactivation at
//! one version.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::users::{Address, UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use uuid::Uuid;

async fn upsert(
    ctx: &mut HandlerContext<'_>,
    user_id: Uuid,
    address: &Address,
    version: i64,
) -> Result<(), HandlerError> {
    let applied = sqlx::query(
        "INSERT INTO users_cache (user_id, line1, city, postal_code, country, active, version)
         VALUES ($1, $2, $3, $4, $5, true, $6)
         ON CONFLICT (user_id) DO UPDATE SET line1 = EXCLUDED.line1, city = EXCLUDED.city,
             postal_code = EXCLUDED.postal_code, country = EXCLUDED.country,
             version = greatest(users_cache.version, EXCLUDED.version)
         WHERE users_cache.version < EXCLUDED.version OR users_cache.country IS NULL",
    )
    .bind(user_id)
    .bind(&address.line1)
    .bind(&address.city)
    .bind(&address.postal_code)
    .bind(&address.country)
    .bind(version)
    .execute(ctx.tx())
    .await?
    .rows_affected();
    platform::copy_updated(ctx, "users", applied);
    Ok(())
}

pub(crate) struct Registered;

impl EventHandler for Registered {
    type Event = UserRegisteredV1;

    async fn handle(
        &self,
        user: UserRegisteredV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        upsert(ctx, user.user_id, &user.address, user.version).await
    }
}

pub(crate) struct Updated;

impl EventHandler for Updated {
    type Event = UserUpdatedV1;

    async fn handle(
        &self,
        user: UserUpdatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        upsert(ctx, user.user_id, &user.address, user.version).await
    }
}

pub(crate) struct Deactivated;

impl EventHandler for Deactivated {
    type Event = UserDeactivatedV1;

    async fn handle(
        &self,
        user: UserDeactivatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let applied = sqlx::query(
            "INSERT INTO users_cache (user_id, active, version) VALUES ($1, false, $2)
             ON CONFLICT (user_id) DO UPDATE SET active = false, version = EXCLUDED.version
             WHERE users_cache.version <= EXCLUDED.version",
        )
        .bind(user.user_id)
        .bind(user.version)
        .execute(ctx.tx())
        .await?
        .rows_affected();
        platform::copy_updated(ctx, "users", applied);
        Ok(())
    }
}
