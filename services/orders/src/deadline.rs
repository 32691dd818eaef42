//! Each order's saga deadline is a scheduled event, `order.deadline-passed`, written with
//! the order (`Outbox::add_after`: only time in which the service could send and receive
//! counts) and taken back when the order ends; `cancel::DeadlinePassed` cancels the order if
//! it is still pending when the event comes.
//!
//! Orders placed by the previous release's instances during a rolling upgrade have no
//! scheduled deadline (that release watched `deadline_at` itself): the adopter schedules
//! theirs, for the time they had left when that release last watched them. Several
//! instances share the work safely: each takes a batch with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use conveyor::{Envelope, Event, Outbox, OutboxError, Shutdown};
use events_schema::orders::OrderDeadlinePassedV1;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::order::run_event;

/// How often the adopter looks for orders without a scheduled deadline. A deadline is
/// scheduled at most this late; the index it reads is empty once no previous release runs.
const ADOPT_EVERY: Duration = Duration::from_secs(1);

/// Orders adopted per transaction.
const ADOPT_BATCH: i64 = 500;

/// The event that ends `order_id`'s saga if it is still pending after `timeout`.
fn timer(order_id: Uuid, timeout: Duration) -> Envelope {
    let passed = OrderDeadlinePassedV1 {
        order_id,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    run_event(order_id, &passed)
}

/// Schedules `order_id`'s deadline `timeout` of watched time from now, within `tx`.
pub(crate) async fn schedule(
    outbox: &Outbox,
    tx: &mut PgConnection,
    order_id: Uuid,
    timeout: Duration,
) -> Result<(), OutboxError> {
    outbox
        .add_after(tx, &timer(order_id, timeout), timeout)
        .await
}

/// Takes back `order_id`'s deadline within `tx`, once the order ended some other way.
pub(crate) async fn forget(
    outbox: &Outbox,
    tx: &mut PgConnection,
    order_id: Uuid,
) -> Result<(), OutboxError> {
    outbox
        .cancel_scheduled(tx, OrderDeadlinePassedV1::TYPE, &order_id.to_string())
        .await?;
    Ok(())
}

/// Schedules the deadlines of pending orders that have none (placed by the previous release).
pub(crate) struct Adopter {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    /// This instance's `ORDER_SAGA_TIMEOUT`, which the timer names.
    pub(crate) saga_timeout: Duration,
}

impl Adopter {
    pub(crate) async fn run(self, shutdown: Shutdown) {
        while !shutdown.is_fired() {
            let wait = match self.adopt().await {
                Ok(adopted) if adopted == ADOPT_BATCH => Duration::ZERO,
                Ok(_) => ADOPT_EVERY,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "Could not schedule the deadlines of orders placed by the previous release; retrying."
                    );
                    ADOPT_EVERY
                }
            };
            shutdown.sleep(wait).await;
        }
    }

    /// One batch: marks the orders scheduled and schedules each for what its `deadline_at`
    /// left (none left: due at once), in one transaction.
    ///
    /// "Left" is as of the last time the previous release's watchdog ran (its `saga_clock`):
    /// the time since, when longer than that watchdog's outage threshold, nobody watched
    /// these orders (every orders instance stopped for the upgrade, say), and it was not
    /// added to their `deadline_at`.
    async fn adopt(&self) -> anyhow::Result<i64> {
        let mut tx = self.pool.begin().await?;
        let orphans: Vec<(Uuid, f64)> = sqlx::query_as(
            "UPDATE orders SET deadline_scheduled = true
             WHERE id IN (SELECT id FROM orders WHERE status = 'pending' AND NOT deadline_scheduled
                          ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, greatest(0, extract(epoch FROM deadline_at - coalesce(
                 (SELECT CASE WHEN clock_timestamp() - ticked_at > interval '3 s' THEN ticked_at
                              ELSE clock_timestamp() END
                  FROM saga_clock WHERE id = 1),
                 clock_timestamp())))::float8",
        )
        .bind(ADOPT_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        for (order_id, left) in &orphans {
            let envelope = timer(*order_id, self.saga_timeout);
            self.outbox
                .add_after(&mut tx, &envelope, Duration::from_secs_f64(*left))
                .await?;
        }
        tx.commit().await?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "Scheduled the deadlines of pending orders placed by the previous release."
            );
        }
        Ok(i64::try_from(orphans.len()).unwrap_or(i64::MAX))
    }
}
