//! Reading a queue without losing or reordering it: every message is held unacknowledged,
//! and whatever is not acknowledged returns to the queue, in its order, when the channel
//! closes. Nothing is taken off and put back at the tail, so later readers see the order
//! the failures happened in.
//!
//! A queue of any size is read in bounded memory: the reader hands out one delivery at a
//! time and the broker sends at most a prefetch ahead, sized so that about
//! [`READ_AHEAD_BYTES`] are in flight. Held messages count against a consumer's prefetch, so
//! once a consumer holds that many it is cancelled (its messages stay held by the channel)
//! and a new one takes over where it stopped; only one consumer reads at a time, so the order
//! is kept. A quorum queue keeps a cancelled consumer until its messages are settled, and
//! slows down with thousands of them, so the prefetch is as large as the byte budget allows.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use super::DeadLetterError;
use crate::amqp::{declare_passive, is_not_found};
use crate::publisher::ConfirmChannel;

/// About how many bytes of deliveries the broker sends ahead of the one being read: the
/// reader's memory bound.
const READ_AHEAD_BYTES: u64 = 32 * 1024 * 1024;
/// The prefetch of the first consumer, before any message size is known.
const FIRST_PREFETCH: u16 = 1000;
/// The prefetch's bounds, whatever the messages' size.
const PREFETCH_RANGE: (u16, u16) = (100, 20_000);
/// How long to wait for a further delivery before concluding that the counted messages
/// are not coming (another reader took them). Reached only then, so it can be generous: a
/// large quorum queue under load may pause deliveries for a second or more.
const IDLE: Duration = Duration::from_secs(15);
/// After a cancel, how long to wait for deliveries the broker sent before it saw it.
const CANCEL_DRAIN: Duration = Duration::from_millis(300);
/// How long to wait for another reader (often one just killed) to let go of the queue.
const OTHER_READERS_GRACE: Duration = Duration::from_secs(5);
/// How long a release waits for the queue to count what it gave back.
const RETURN_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct HeldQueue {
    pub(crate) confirms: ConfirmChannel,
    pub(crate) queue: String,
    /// Messages ready in the queue when it was opened: what a read goes through.
    pub(crate) waiting: u64,
    delivered: AtomicU64,
    acked: AtomicU64,
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
    ///
    /// # Errors
    /// [`DeadLetterError::HeldElsewhere`] when another reader still holds messages of the
    /// queue after a short grace: what it holds could not be seen, so no answer would be
    /// whole.
    pub(crate) async fn open(
        connection: &Connection,
        user: &str,
        queue: &str,
    ) -> Result<Self, DeadLetterError> {
        let channel = connection.create_channel().await?;
        let mut declared = declare_passive(&channel, queue).await?;
        let deadline = tokio::time::Instant::now() + OTHER_READERS_GRACE;
        while declared.consumer_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            declared = declare_passive(&channel, queue).await?;
        }
        if declared.consumer_count() > 0 {
            let _ = channel.close(200, "held elsewhere".into()).await;
            return Err(DeadLetterError::HeldElsewhere {
                queue: queue.to_owned(),
                readers: declared.consumer_count(),
            });
        }
        Ok(Self {
            confirms: ConfirmChannel::enable(channel, user).await?,
            queue: queue.to_owned(),
            waiting: u64::from(declared.message_count()),
            delivered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
        })
    }

    fn channel(&self) -> &Channel {
        self.confirms.channel()
    }

    /// A read of the messages counted at open, in queue order.
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader {
            held: self,
            consumer: None,
            outstanding: 0,
            prefetch: FIRST_PREFETCH,
            highest_tag_before: 0,
            highest_tag: 0,
            read: 0,
            bytes_read: 0,
        }
    }

    /// Hands every message counted at open to `visit`, in queue order, and answers how many
    /// it read; they all stay held until [`HeldQueue::release`].
    pub(crate) async fn scan(
        &self,
        mut visit: impl FnMut(Delivery) -> ControlFlow<()>,
    ) -> Result<u64, lapin::Error> {
        let mut reader = self.reader();
        while let Some(delivery) = reader.next().await? {
            if visit(delivery).is_break() {
                break;
            }
        }
        Ok(reader.read())
    }

    /// Returns every message not acknowledged to the queue, in order, and waits until the
    /// queue counts them again: a quorum queue takes back a closed channel's messages a
    /// moment after the close, and a reader that came next would otherwise miss them.
    pub(crate) async fn release(&self, connection: &Connection) {
        let held_back = self.delivered.load(Ordering::Relaxed) - self.acked.load(Ordering::Relaxed);
        let ready_before = declare_passive(self.channel(), &self.queue)
            .await
            .map(|declared| u64::from(declared.message_count()));
        let _ = self.channel().close(200, "released".into()).await;
        let Ok(ready_before) = ready_before else {
            return;
        };
        let expected = ready_before + held_back;
        let counted = async {
            let probe = connection.create_channel().await.ok()?;
            loop {
                let ready = u64::from(
                    declare_passive(&probe, &self.queue)
                        .await
                        .ok()?
                        .message_count(),
                );
                if ready >= expected {
                    let _ = probe.close(200, "counted".into()).await;
                    return Some(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(RETURN_WAIT, counted).await.is_err() {
            tracing::warn!(queue = %self.queue, expected, "The queue has not counted the messages given back yet; a reader started now may miss some.");
        }
    }
}

/// Hands out the held queue's messages one at a time.
pub(crate) struct Reader<'a> {
    held: &'a HeldQueue,
    consumer: Option<(String, Consumer)>,
    /// Delivered to the current consumer and not acknowledged: it gets no more at `prefetch`.
    outstanding: u16,
    prefetch: u16,
    /// Delivery tags grow along the channel: above this one, a delivery is the current
    /// consumer's.
    highest_tag_before: u64,
    highest_tag: u64,
    read: u64,
    bytes_read: u64,
}

impl Reader<'_> {
    /// The next message, held; `None` once the messages counted at open were read, or when
    /// none comes for a while (another reader took them, or they expired).
    pub(crate) async fn next(&mut self) -> Result<Option<Delivery>, lapin::Error> {
        if self.read >= self.held.waiting {
            self.stop().await?;
            return Ok(None);
        }
        if self.consumer.is_none() || self.outstanding >= self.prefetch {
            self.stop().await?;
            self.start().await?;
        }
        let Some((_, consumer)) = self.consumer.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout(IDLE, consumer.next()).await {
            Ok(Some(delivery)) => {
                let delivery = delivery?;
                self.outstanding += 1;
                self.read += 1;
                self.bytes_read += delivery.data.len() as u64;
                self.held.delivered.fetch_add(1, Ordering::Relaxed);
                self.highest_tag = self.highest_tag.max(delivery.delivery_tag);
                Ok(Some(delivery))
            }
            Ok(None) | Err(_) => {
                self.stop().await?;
                Ok(None)
            }
        }
    }

    /// Messages handed out so far.
    pub(crate) fn read(&self) -> u64 {
        self.read
    }

    /// Whether every message counted at open was handed out.
    pub(crate) fn complete(&self) -> bool {
        self.read >= self.held.waiting
    }

    /// Removes a handed-out message from the queue for good.
    pub(crate) async fn ack(&mut self, delivery_tag: u64) -> Result<(), lapin::Error> {
        self.held
            .channel()
            .basic_ack(delivery_tag, BasicAckOptions::default())
            .await?;
        self.held.acked.fetch_add(1, Ordering::Relaxed);
        if delivery_tag > self.highest_tag_before {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        Ok(())
    }

    /// How many the next consumer may be sent ahead: the byte budget over the average size.
    fn next_prefetch(&self) -> u16 {
        if self.read == 0 {
            return FIRST_PREFETCH;
        }
        let average = (self.bytes_read / self.read).max(1);
        let (low, high) = PREFETCH_RANGE;
        u16::try_from(READ_AHEAD_BYTES / average)
            .unwrap_or(high)
            .clamp(low, high)
    }

    async fn start(&mut self) -> Result<(), lapin::Error> {
        let tag = format!("conveyor-dlq-{}", uuid::Uuid::new_v4().simple());
        self.prefetch = self.next_prefetch();
        // A per-consumer prefetch applies to the consumers started after it is set.
        self.held
            .channel()
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = self
            .held
            .channel()
            .basic_consume(
                self.held.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.highest_tag_before = self.highest_tag;
        self.outstanding = 0;
        self.consumer = Some((tag, consumer));
        Ok(())
    }

    /// Cancels the current consumer; what it delivered stays held by the channel, including
    /// deliveries sent before the broker saw the cancel, which are counted here so that a
    /// release knows how many it gives back.
    async fn stop(&mut self) -> Result<(), lapin::Error> {
        if let Some((tag, mut consumer)) = self.consumer.take() {
            self.held
                .channel()
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await?;
            while let Ok(Some(delivery)) = tokio::time::timeout(CANCEL_DRAIN, consumer.next()).await
            {
                delivery?;
                self.held.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}
