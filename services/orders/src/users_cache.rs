//! The cached copy of users: whether they are active. A change applies only if its version
//! is newer than the one held, so reordering never regresses the cached copy; a
//! deactivation also wins a tie (a republish sends a deactivated user's state and its
//! deactivation at one version).

use conveyor::{EventHandler, HandlerContext, HandlerError};
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
    platform::copy_updated(ctx, "users", applied);
    Ok(())
}

pub(crate) struct Registered;

impl EventHandler for Registered {
    type Event = UserRegisteredV1;
    async fn handle(
        &self,
        event: UserRegisteredV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        user(ctx, event.user_id, true, event.version).await
    }
}

pub(crate) struct Updated;

impl EventHandler for Updated {
    type Event = UserUpdatedV1;
    async fn handle(
        &self,
        event: UserUpdatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        user(ctx, event.user_id, true, event.version).await
    }
}

pub(crate) struct Deactivated;

impl EventHandler for Deactivated {
    type Event = UserDeactivatedV1;
    async fn handle(
        &self,
        event: UserDeactivatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        user(ctx, event.user_id, false, event.version).await
    }
}
