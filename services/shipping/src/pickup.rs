//! A return's pickup: on `return.requested`, book the carrier at the user's cached address
//! (`pickup.booked`), or fail where the country is not served (`pickup.failed`); on
//! `pickup.booked`, the carrier collects the parcel at the booked time (`return.received`,
//! scheduled); on `return.cancelled`, cancel the pickup (`pickup.cancelled`): the carrier
//! does not come, or sends a parcel it collected already back.
//!
//! The reference system has no carrier to ask: collecting is `return.received` scheduled
//! `PICKUP_COLLECTED_AFTER` after booking, where a deployment would emit it from its
//! carrier's notice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use conveyor::{EventHandler, EventMeta, HandlerContext, HandlerError};
use events_schema::pickups::{PickupBookedV1, PickupCancelledV1, PickupFailedV1, PickupFailure};
use events_schema::returns::{ReturnCancelledV1, ReturnReceivedV1, ReturnRequestedV1};
use flows::{Compensate, FailedRuns};
use uuid::Uuid;

// ANCHOR: failed_runs
/// Where shipping remembers the returns it saw cancelled.
const CANCELLED_RETURNS: FailedRuns = FailedRuns {
    table: "cancelled_returns",
    column: "return_id",
};
// ANCHOR_END: failed_runs

/// On `return.requested`: book a pickup at the user's cached address, if its country is
/// served.
pub(crate) struct Book {
    pub(crate) countries: Arc<BTreeSet<String>>,
}

impl EventHandler for Book {
    type Event = ReturnRequestedV1;

    fn keys(&self, requested: &ReturnRequestedV1, _meta: &EventMeta) -> Vec<String> {
        vec![flows::run_key(requested.return_id)]
    }

    async fn handle(
        &self,
        requested: ReturnRequestedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let return_id = requested.return_id;
        // The country, unless this service settled the return already: one round trip.
        const COUNTRY_UNLESS_SETTLED: &str = concat!(
            "SELECT country FROM (SELECT 1) AS one
             LEFT JOIN users_cache ON users_cache.user_id = $2
             WHERE NOT (",
            flows::settled_condition!(
                "cancelled_returns",
                "return_id",
                "EXISTS (SELECT 1 FROM pickups WHERE return_id = $1)
                 OR EXISTS (SELECT 1 FROM failed_pickups WHERE return_id = $1)"
            ),
            ")"
        );
        let cached: Option<Option<String>> = sqlx::query_scalar(COUNTRY_UNLESS_SETTLED)
            .bind(return_id)
            .bind(requested.user_id)
            .fetch_optional(ctx.tx())
            .await?;
        let Some(country) = cached else {
            // Booked or failed already, or cancelled before it got here.
            return Ok(());
        };
        let Some(country) = country else {
            // The order was shipped to this user, so the user exists: this copy is behind.
            return Err(HandlerError::transient(anyhow::anyhow!(
                "user {} has no address in the shipping copy of users yet",
                requested.user_id
            )));
        };
        if !self.countries.contains(&country) {
            return fail(ctx, &requested, country).await;
        }
        let pickup_id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO pickups (id, return_id, order_id, user_id, country, lines, status)
             VALUES ($1, $2, $3, $4, $5, $6, 'booked')",
        )
        .bind(pickup_id)
        .bind(return_id)
        .bind(requested.order_id)
        .bind(requested.user_id)
        .bind(&country)
        .bind(sqlx::types::Json(&requested.lines))
        .execute(ctx.tx())
        .await?;
        let booked = PickupBookedV1 {
            return_id,
            order_id: requested.order_id,
            pickup_id,
            lines: requested.lines,
            country,
        };
        ctx.emit(return_id, &booked).await
    }
}

async fn fail(
    ctx: &mut HandlerContext<'_>,
    requested: &ReturnRequestedV1,
    country: String,
) -> Result<(), HandlerError> {
    sqlx::query("INSERT INTO failed_pickups (return_id, reason) VALUES ($1, 'not-served')")
        .bind(requested.return_id)
        .execute(ctx.tx())
        .await?;
    let failed = PickupFailedV1 {
        return_id: requested.return_id,
        order_id: requested.order_id,
        reason: PickupFailure::NotServed,
        country: Some(country),
    };
    ctx.emit(requested.return_id, &failed).await
}

/// On `pickup.booked`: the carrier collects the parcel `collect_after` later
/// (`return.received`, scheduled), unless the return was cancelled meanwhile.
pub(crate) struct Collect {
    pub(crate) collect_after: Duration,
}

impl EventHandler for Collect {
    type Event = PickupBookedV1;

    fn keys(&self, booked: &PickupBookedV1, _meta: &EventMeta) -> Vec<String> {
        vec![flows::run_key(booked.return_id)]
    }

    async fn handle(
        &self,
        booked: PickupBookedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let return_id = booked.return_id;
        let collecting = sqlx::query(
            "UPDATE pickups SET status = 'collecting', updated_at = now()
             WHERE return_id = $1 AND status = 'booked'",
        )
        .bind(return_id)
        .execute(ctx.tx())
        .await?;
        if collecting.rows_affected() == 0 {
            // Cancelled with its return, or collecting already.
            return Ok(());
        }
        let received = ReturnReceivedV1 {
            return_id,
            order_id: booked.order_id,
            pickup_id: booked.pickup_id,
            lines: booked.lines,
        };
        ctx.emit_after(return_id, &received, self.collect_after)
            .await
    }
}

// ANCHOR: compensate
/// On `return.cancelled`: cancel the pickup, sending back a parcel collected already.
pub(crate) struct CancelPickup;

impl Compensate for CancelPickup {
    type Failure = ReturnCancelledV1;
    type Undone = PickupCancelledV1;

    const FAILED_RUNS: FailedRuns = CANCELLED_RETURNS;

    fn run_id(cancelled: &ReturnCancelledV1) -> Uuid {
        cancelled.return_id
    }

    async fn undo(
        &self,
        ctx: &mut HandlerContext<'_>,
        return_id: Uuid,
    ) -> Result<Option<PickupCancelledV1>, HandlerError> {
        // A collection still in the schedule is taken back; a parcel collected already is
        // sent back to the customer.
        ctx.cancel_scheduled::<ReturnReceivedV1>(return_id).await?;
        let cancelled: Option<(Uuid, Uuid)> = sqlx::query_as(
            "UPDATE pickups SET status = 'cancelled', updated_at = now()
             WHERE return_id = $1 AND status <> 'cancelled' RETURNING id, order_id",
        )
        .bind(return_id)
        .fetch_optional(ctx.tx())
        .await?;
        Ok(cancelled.map(|(pickup_id, order_id)| PickupCancelledV1 {
            return_id,
            order_id,
            pickup_id,
        }))
    }
}
// ANCHOR_END: compensate
