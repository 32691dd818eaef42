//! Cancels pending orders whose saga deadline has passed (`deadline-passed`). Several
//! instances share the work safely: each takes a batch with `FOR UPDATE SKIP LOCKED`.

use std::time::Duration;

use conveyor::{Outbox, Shutdown};
use events_schema::orders::{CancelReason, OrderCancelledV1, PricedItem};
use sqlx::PgPool;
use uuid::Uuid;

use crate::order::{order_event, reason_text, skus_of};

pub(crate) struct Watchdog {
    pub(crate) pool: PgPool,
    pub(crate) outbox: Outbox,
    pub(crate) saga_timeout: Duration,
}

impl Watchdog {
    pub(crate) async fn run(self, shutdown: Shutdown) {
        // Checking a few times per timeout keeps a late cancel within a quarter of it.
        let interval =
            (self.saga_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        while !shutdown.is_fired() {
            if let Err(error) = self.cancel_overdue().await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "Could not cancel overdue orders; retrying."
                );
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.fired() => {}
            }
        }
    }

    async fn cancel_overdue(&self) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let overdue: Vec<(Uuid, Uuid, sqlx::types::Json<Vec<PricedItem>>)> = sqlx::query_as(
            "UPDATE orders SET status = 'cancelled', reason = $1, detail = $2, finished_at = clock_timestamp()
             WHERE id IN (SELECT id FROM orders WHERE status = 'pending' AND deadline_at < clock_timestamp()
                          ORDER BY deadline_at LIMIT 500 FOR UPDATE SKIP LOCKED)
             RETURNING id, user_id, items",
        )
        .bind(reason_text(CancelReason::DeadlinePassed))
        .bind(format!("no answer within {:?}", self.saga_timeout))
        .fetch_all(&mut *tx)
        .await?;
        if overdue.is_empty() {
            return Ok(());
        }
        let events: Vec<_> = overdue
            .iter()
            .map(|(order_id, user_id, items)| {
                let cancelled = OrderCancelledV1 {
                    order_id: *order_id,
                    user_id: *user_id,
                    reason: CancelReason::DeadlinePassed,
                    detail: Some(format!("no answer within {:?}", self.saga_timeout)),
                    skus: skus_of(items),
                };
                order_event(*order_id, &cancelled)
            })
            .collect();
        self.outbox.add_all(&mut tx, &events).await?;
        tx.commit().await?;
        tracing::info!(
            count = overdue.len(),
            "Cancelled orders past the saga deadline."
        );
        Ok(())
    }
}
