//! The operators' side of dead letters: read a service's dead-letter queue without losing
//! or reordering it, group failures, and replay, move or purge the ones a filter picks,
//! publishing each copy with a confirm before the original is acknowledged.
//!
//! # Layout
//!
//! - `letter`: one dead letter with its reason headers.
//! - `filter`: which dead letters a command applies to.
//! - `fingerprint`: failures grouped by kind, type and masked error.
//! - `held_queue`: hold-and-release reading that keeps queue order.
//! - `audit`: the audit log of replays, moves and purges.

pub mod audit;
mod filter;
mod fingerprint;
mod held_queue;
mod letter;

use std::time::{Duration, Instant};

use lapin::Connection;

pub use filter::{Filter, topic_matches};
pub use fingerprint::{Fingerprint, mask};
pub use letter::DeadLetter;

use crate::amqp::{AmqpConfig, ConnectError};
use crate::publisher::{OutgoingMessage, PublishError};
use crate::topology::Names;
use held_queue::{HeldQueue, queue_exists};

/// The failure fingerprint of a dead letter.
pub fn fingerprint(letter: &DeadLetter) -> Fingerprint {
    fingerprint::of(letter)
}

/// Why an operator's command could not run; nothing was changed when it is returned before
/// any message moved.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "there is no dead-letter queue {queue}: is {service:?} a service name? A service's queues exist once it has started (or after `conveyor topology apply`); `conveyor dlq list` shows those that exist"
    )]
    UnknownService { service: String, queue: String },
    #[error(
        "queue {0} does not exist: declare it first (a parking-lot queue, say), then move to it"
    )]
    UnknownTarget(String),
    #[error("the broker failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Where the chosen dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Back to the service's own queue, so only the consumer that failed sees them again.
    Replay,
    /// Into another existing queue.
    Queue(String),
    /// Nowhere: acknowledged and gone.
    Purge,
}

/// One service's dead-letter queue, open for reading and transfers.
pub struct DeadLetterQueue {
    connection: Connection,
    held: HeldQueue,
    service: String,
    names: Names,
}

impl DeadLetterQueue {
    /// # Errors
    /// [`DeadLetterError::UnknownService`] when `<service>.dlq` does not exist.
    pub async fn open(
        amqp: &AmqpConfig,
        names: &Names,
        service: &str,
    ) -> Result<Self, DeadLetterError> {
        let connection = amqp.connect().await?;
        let queue = names.dead_letter_queue(service);
        if !queue_exists(&connection, &queue).await? {
            return Err(DeadLetterError::UnknownService {
                service: service.to_owned(),
                queue,
            });
        }
        let held = HeldQueue::open(&connection, &queue).await?;
        Ok(Self {
            connection,
            held,
            service: service.to_owned(),
            names: names.clone(),
        })
    }

    pub fn queue(&self) -> &str {
        &self.held.queue
    }

    /// Messages in the queue when it was opened.
    pub fn waiting(&self) -> u32 {
        self.held.waiting
    }

    /// Holds every dead letter, in queue order; none leaves the queue unless transferred.
    ///
    /// # Errors
    /// [`DeadLetterError::Broker`] when the broker fails while reading.
    pub async fn hold_all(&self) -> Result<Vec<DeadLetter>, DeadLetterError> {
        Ok(self
            .held
            .hold_all()
            .await?
            .into_iter()
            .map(DeadLetter::from_delivery)
            .collect())
    }

    /// Checks that the destination can take messages, before anything moves.
    ///
    /// # Errors
    /// [`DeadLetterError::UnknownTarget`] for a queue that does not exist.
    pub async fn check_destination(
        &self,
        destination: &Destination,
    ) -> Result<(), DeadLetterError> {
        let queue = match destination {
            Destination::Replay => self.names.service_queue(&self.service),
            Destination::Queue(queue) => queue.clone(),
            Destination::Purge => return Ok(()),
        };
        if queue_exists(&self.connection, &queue).await? {
            Ok(())
        } else {
            Err(DeadLetterError::UnknownTarget(queue))
        }
    }

    /// Sends `letters` (held by this queue) to `destination` at most `rate` per second:
    /// each copy is confirmed by the broker before its original is acknowledged, so a
    /// transfer killed at any moment loses nothing. Calls `progress` with the count done.
    ///
    /// # Errors
    /// [`DeadLetterError`] when publishing or acknowledging fails; what was not yet
    /// acknowledged stays in the dead-letter queue.
    pub async fn transfer(
        &self,
        letters: &[&DeadLetter],
        destination: &Destination,
        rate: Option<f64>,
        mut progress: impl FnMut(usize),
    ) -> Result<usize, DeadLetterError> {
        let chunk_size = rate.map_or(100, |rate| ((rate / 10.0) as usize).clamp(1, 100));
        let started = Instant::now();
        let mut done = 0;
        for chunk in letters.chunks(chunk_size) {
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(done as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            if let Some(queue) = self.target_queue(destination) {
                let copies: Vec<_> = chunk
                    .iter()
                    .map(|letter| OutgoingMessage {
                        exchange: String::new(),
                        routing_key: queue.clone(),
                        body: letter.body.clone(),
                        properties: letter.forwarded_properties(),
                    })
                    .collect();
                self.held.confirms.publish_all(&copies).await?;
            }
            for letter in chunk {
                self.held.ack(letter.delivery_tag).await?;
            }
            done += chunk.len();
            progress(done);
        }
        Ok(done)
    }

    fn target_queue(&self, destination: &Destination) -> Option<String> {
        match destination {
            Destination::Replay => Some(self.names.service_queue(&self.service)),
            Destination::Queue(queue) => Some(queue.clone()),
            Destination::Purge => None,
        }
    }

    /// Returns every dead letter not transferred to the queue, in order, and disconnects.
    pub async fn release(self) {
        self.held.release().await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}
