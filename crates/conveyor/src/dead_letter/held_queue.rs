//! Reading a queue without losing or reordering it: every message is held unacknowledged,
//! and whatever is not acknowledged returns to the queue, in its order, when the channel
//! closes. Nothing is taken off and put back at the tail, so later readers see the order
//! the failures happened in.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::amqp::{declare_passive, is_not_found};
use crate::publisher::ConfirmChannel;

/// How long to wait for a further delivery before concluding the queue has no more.
const IDLE: Duration = Duration::from_millis(1000);
/// After the counted messages, how long to keep taking ones that arrive late.
const LATE: Duration = Duration::from_millis(300);
/// Rounds of reading at most, so a queue that keeps filling cannot keep a reader forever.
const MAX_ROUNDS: usize = 5;
/// How long to wait for another reader (often one just killed) to let go of the queue.
const OTHER_READERS_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct HeldQueue {
    pub(crate) confirms: ConfirmChannel,
    pub(crate) queue: String,
    pub(crate) waiting: u32,
}

/// Whether `queue` exists, asked on a throwaway channel (a missing queue closes it).
pub(crate) async fn queue_exists(
    connection: &Connection,
    queue: &str,
) -> Result<bool, lapin::Error> {
    let probe = connection.create_channel().await?;
    match declare_passive(&probe, queue).await {
        Ok(_) => {
            let _ = probe.close(200, "checked".into()).await;
            Ok(true)
        }
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

impl HeldQueue {
    /// Opens a confirming channel on an existing `queue` and counts its messages.
    pub(crate) async fn open(connection: &Connection, queue: &str) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        let mut declared = declare_passive(&channel, queue).await?;
        let deadline = tokio::time::Instant::now() + OTHER_READERS_GRACE;
        while declared.consumer_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            declared = declare_passive(&channel, queue).await?;
        }
        if declared.consumer_count() > 0 {
            tracing::warn!(
                queue,
                readers = declared.consumer_count(),
                "Another reader holds messages of this queue; those it holds are left out."
            );
        }
        // No prefetch limit: every message is held at once.
        channel
            .basic_qos(u16::MAX, BasicQosOptions::default())
            .await?;
        Ok(Self {
            confirms: ConfirmChannel::enable(channel).await?,
            queue: queue.to_owned(),
            waiting: declared.message_count(),
        })
    }

    fn channel(&self) -> &Channel {
        self.confirms.channel()
    }

    /// Holds every message in the queue, in queue order.
    ///
    /// Messages a reader that died was holding (a killed replay) come back to a quorum
    /// queue only after the next consumer change, so after each round the queue is counted
    /// again and, if anything is ready, read once more.
    pub(crate) async fn hold_all(&self) -> Result<Vec<Delivery>, lapin::Error> {
        let mut held = Vec::with_capacity(self.waiting as usize);
        let mut ready = self.waiting;
        for _ in 0..MAX_ROUNDS {
            if ready == 0 {
                break;
            }
            self.hold_round(ready, &mut held).await?;
            ready = declare_passive(self.channel(), &self.queue)
                .await?
                .message_count();
        }
        tracing::debug!(queue = %self.queue, waiting = self.waiting, held = held.len(), "Held the queue.");
        Ok(held)
    }

    /// Consumes until `expected` more messages are held (or none comes for a while), then
    /// stops consuming; the held messages stay unacknowledged.
    async fn hold_round(
        &self,
        expected: u32,
        held: &mut Vec<Delivery>,
    ) -> Result<(), lapin::Error> {
        let tag = format!("conveyor-dlq-{}", uuid::Uuid::new_v4().simple());
        let mut deliveries = self
            .channel()
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let target = held.len() + expected as usize;
        while held.len() < target {
            match tokio::time::timeout(IDLE, deliveries.next()).await {
                Ok(Some(delivery)) => held.push(delivery?),
                // Fewer than counted: another reader holds the rest, or they were taken.
                Ok(None) | Err(_) => break,
            }
        }
        let late_until = tokio::time::Instant::now() + LATE;
        while let Ok(Some(delivery)) = tokio::time::timeout_at(late_until, deliveries.next()).await
        {
            held.push(delivery?);
        }
        self.channel()
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await?;
        // Deliveries the broker sent before it saw the cancel are ours too; the stream ends
        // once they are read.
        while let Ok(Some(delivery)) = tokio::time::timeout(LATE, deliveries.next()).await {
            held.push(delivery?);
        }
        Ok(())
    }

    pub(crate) async fn ack(&self, delivery_tag: u64) -> Result<(), lapin::Error> {
        self.channel()
            .basic_ack(delivery_tag, BasicAckOptions::default())
            .await
    }

    /// Returns every message not acknowledged to the queue, in order.
    pub(crate) async fn release(&self) {
        let _ = self.channel().close(200, "released".into()).await;
    }
}
