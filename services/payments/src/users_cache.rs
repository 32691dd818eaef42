//! The cached copy of users: credit limit and whether they are active. A change applies
//! only if its version is newer than the one held, so reordering never regresses the copy.
//! Two exceptions keep a deactivated user's copy whole whatever the order of arrival: a
//! deactivation wins a tie of versions (a republish sends a deactivated user's state and its
//! deactivation at one version), and a row a deactivation made without a credit limit takes
//! the limit of an older registration or update.

use conveyor::{EventHandler, HandlerContext, HandlerError};
use events_schema::users::{UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use uuid::Uuid;

async fn upsert(
    ctx: &mut HandlerContext<'_>,
    user_id: Uuid,
    credit_limit_cents: i64,
    currency: &str,
    version: i64,
) -> Result<(), HandlerError> {
    let applied = sqlx::query(
        "INSERT INTO users_cache (user_id, credit_limit_cents, currency, active, version) VALUES ($1, $2, $3, true, $4)
         ON CONFLICT (user_id) DO UPDATE SET credit_limit_cents = EXCLUDED.credit_limit_cents,
             currency = EXCLUDED.currency,
             version = greatest(users_cache.version, EXCLUDED.version)
         WHERE users_cache.version < EXCLUDED.version OR users_cache.credit_limit_cents IS NULL",
    )
    .bind(user_id)
    .bind(credit_limit_cents)
    .bind(currency)
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
        upsert(
            ctx,
            user.user_id,
            user.credit_limit_cents,
            &user.currency,
            user.version,
        )
        .await
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
        upsert(
            ctx,
            user.user_id,
            user.credit_limit_cents,
            &user.currency,
            user.version,
        )
        .await
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
        // Arriving before the registration is fine: the row holds no limit until it comes.
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
