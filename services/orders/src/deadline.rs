//! Cancels pending orders whose saga deadline has passed (`deadline-passed`). Several
//! instances share the work safely: each takes a batch with `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::Duration;

use conveyor::{ConsumerStats, Outbox, Shutdown};
use events_schema::orders::{CancelReason, OrderCancelledV1, PricedItem};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::order::{SagaOutcome, order_event, reason_text, skus_of};

pub(crate) struct Watchdog {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    pub(crate) saga_timeout: Duration,
    /// This instance's consumer: while it has no broker session the saga cannot move, so
    /// the watchdog neither cancels nor lets the saga clock run.
    pub(crate) broker: Arc<ConsumerStats>,
}

impl Watchdog {
    pub(crate) async fn run(self, shutdown: Shutdown) {
        // Checking a few times per timeout keeps a late cancel within a quarter of it.
        let interval =
            (self.saga_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        // A pause longer than a few missed checks is an outage, not a slow tick.
        let outage = (interval * 3).max(Duration::from_secs(2));
        while !shutdown.is_fired() {
            if self.broker.is_connected()
                && let Err(error) = self.tick(outage).await
            {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "Could not cancel overdue orders; retrying."
                );
            }
            shutdown.sleep(interval).await;
        }
    }

    /// Advances the saga clock and cancels what is overdue, in one transaction.
    async fn tick(&self, outage: Duration) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        self.discount_outage(&mut tx, outage).await?;
        let cancelled = self.cancel_overdue(&mut tx).await?;
        tx.commit().await?;
        cancelled.iter().for_each(SagaOutcome::record);
        Ok(())
    }

    /// Deadlines count only time in which some instance watched with the broker reachable:
    /// when no instance ticked for longer than `outage` (every orders process down, or the
    /// broker away), every pending deadline moves on by that gap, so an outage cancels no
    /// order that would have completed. Replicas share the clock row.
    async fn discount_outage(
        &self,
        tx: &mut PgConnection,
        outage: Duration,
    ) -> Result<(), sqlx::Error> {
        let gap: Option<f64> = sqlx::query_scalar(
            "WITH last AS (SELECT ticked_at FROM saga_clock WHERE id = 1 FOR UPDATE)
             UPDATE saga_clock SET ticked_at = clock_timestamp() FROM last WHERE saga_clock.id = 1
             RETURNING extract(epoch FROM clock_timestamp() - last.ticked_at)::float8",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(gap) = gap.filter(|gap| *gap > outage.as_secs_f64()) else {
            return Ok(());
        };
        let moved = sqlx::query(
            "UPDATE orders SET deadline_at = deadline_at + make_interval(secs => $1)
             WHERE status = 'pending'",
        )
        .bind(gap)
        .execute(&mut *tx)
        .await?;
        tracing::warn!(
            gap_seconds = gap,
            pending_orders = moved.rows_affected(),
            "No instance watched the saga for a while (orders down, or the broker away): \
             pending deadlines moved on by that time."
        );
        Ok(())
    }

    /// Cancels what is overdue; answers the sagas it ended, to count once committed.
    async fn cancel_overdue(&self, tx: &mut PgConnection) -> anyhow::Result<Vec<SagaOutcome>> {
        let detail = format!("no answer within {:?}", self.saga_timeout);
        let overdue: Vec<(Uuid, Uuid, sqlx::types::Json<Vec<PricedItem>>, f64)> =
            sqlx::query_as(
                "UPDATE orders SET status = 'cancelled', reason = $1, detail = $2, finished_at = clock_timestamp()
                 WHERE id IN (SELECT id FROM orders WHERE status = 'pending' AND deadline_at < clock_timestamp()
                              ORDER BY deadline_at LIMIT 500 FOR UPDATE SKIP LOCKED)
                 RETURNING id, user_id, items, extract(epoch FROM finished_at - created_at)::float8"
            )
            .bind(reason_text(CancelReason::DeadlinePassed))
            .bind(&detail)
            .fetch_all(&mut *tx)
            .await?;
        if overdue.is_empty() {
            return Ok(Vec::new());
        }
        let events: Vec<_> = overdue
            .iter()
            .map(|(order_id, user_id, items, _)| {
                let cancelled = OrderCancelledV1 {
                    order_id: *order_id,
                    user_id: *user_id,
                    reason: CancelReason::DeadlinePassed,
                    detail: Some(detail.clone()),
                    skus: skus_of(items),
                };
                order_event(*order_id, &cancelled)
            })
            .collect();
        self.outbox.add_all(tx, &events).await?;
        tracing::info!(
            count = overdue.len(),
            "Cancelled orders past the saga deadline."
        );
        Ok(overdue
            .iter()
            .map(|(_, _, _, seconds)| {
                SagaOutcome::cancelled(CancelReason::DeadlinePassed, *seconds)
            })
            .collect())
    }
}
