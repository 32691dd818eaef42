//! The operators' side of dead letters: read a service's dead-letter queue without losing
//! or reordering it, group failures, and replay, move or purge the ones a filter picks,
//! publishing each copy with a confirm before the original is acknowledged.
//!
//! # Layout
//!
//! - `letter`: one dead letter with its reason headers.
//! - `filter`: which dead letters a command applies to.
//! - `fingerprint`: failures grouped by kind, type and masked error.
//! - `groups`: the groups of a scan, with counts, first and last failure and a sample.
//! - `held_queue`: hold-and-release reading that keeps queue order, in bounded memory.
//! - `transfer`: replay, move and purge, in windows, each copy confirmed before its ack.
//! - `edit`: one letter's data changed and sent back as a new event, exactly once.
//! - `gentle`: replay in growing batches that stops when the failure comes back.
//! - `audit`: the audit log of replays, moves and purges.

pub mod audit;
mod edit;
mod filter;
mod fingerprint;
mod gentle;
mod groups;
mod held_queue;
mod letter;
mod transfer;

use std::ops::ControlFlow;

use lapin::Connection;

pub use edit::{EditError, EditReport, edit_and_retry, edited_copy, event_of, find, json_patch};
pub use filter::{Filter, topic_matches};
pub use fingerprint::{Fingerprint, mask};
pub use gentle::{
    BATCH_SIZES, Control, GentleEnd, GentleOptions, GentleProgress, GentleReport, MIN_RATE,
    gentle_replay,
};
pub use groups::{Group, Groups, MAX_GROUPS};
pub use letter::DeadLetter;
pub use transfer::{Progress, TransferError, TransferOptions, TransferReport, transfer};

use crate::amqp::{AmqpConfig, ConnectError};
use crate::publisher::PublishError;
use crate::topology::Names;
use held_queue::{HeldQueue, queue_exists};

/// The failure fingerprint of a dead letter.
pub fn fingerprint(letter: &DeadLetter) -> Fingerprint {
    letter.fingerprint()
}

/// Why an operator's command could not run; nothing was changed when it is returned before
/// any message moved.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// No broker could be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The service has no dead-letter queue on the broker.
    #[error(
        "there is no dead-letter queue {queue}: is {service:?} a service name? A service's queues exist once it has started (or after `conveyor topology apply`); `conveyor dlq list` shows those that exist"
    )]
    UnknownService {
        /// The service name given.
        service: String,
        /// The dead-letter queue that name leads to.
        queue: String,
    },
    /// The destination queue, named here, does not exist.
    #[error(
        "queue {0} does not exist: declare it first (a parking-lot queue, say), then move to it"
    )]
    UnknownTarget(String),
    /// Another reader still holds messages of the queue, so a read could not see them all.
    #[error(
        "another reader holds messages of {queue} ({readers} reading; often another operator's dlq command): what it holds cannot be seen now, so nothing was done; run this again once it has finished"
    )]
    HeldElsewhere {
        /// The queue held.
        queue: String,
        /// Consumers the broker counts on the queue.
        readers: u32,
    },
    /// The broker failed: opening a channel, checking a queue, reading or acknowledging.
    #[error("the broker failed: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker did not take a copy or an audit record.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The broker ended a gentle replay's watch on the letters coming back.
    #[error(
        "the broker closed the replay's watch on letters coming back, so the replay stopped; every letter not sent is still in the dead-letter queue: start the replay again"
    )]
    WatchClosed,
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

/// One service's dead-letter queue, open for reading and transfers. Reading holds the
/// messages; [`DeadLetterQueue::release`] gives back every one not transferred, in order.
pub struct DeadLetterQueue {
    connection: Connection,
    held: HeldQueue,
    service: String,
    names: Names,
}

/// How far a read got: a queue is read whole unless another reader took messages meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// Messages ready in the queue when the read began.
    pub waiting: u64,
    /// Messages the read saw.
    pub read: u64,
}

impl ReadSummary {
    /// Whether the read saw every message that was waiting when it began.
    pub fn complete(&self) -> bool {
        self.read >= self.waiting
    }
}

impl DeadLetterQueue {
    /// # Errors
    /// [`DeadLetterError::UnknownService`] when `<service>.dlq` does not exist;
    /// [`DeadLetterError::HeldElsewhere`] when another reader holds part of it.
    pub async fn open(
        amqp: &AmqpConfig,
        names: &Names,
        service: &str,
    ) -> Result<Self, DeadLetterError> {
        let connection = amqp.connect().await?;
        let queue = names.dead_letter_queue(service);
        let opened = match queue_exists(&connection, &queue).await {
            Ok(true) => HeldQueue::open(&connection, &amqp.user(), &queue).await,
            Ok(false) => Err(DeadLetterError::UnknownService {
                service: service.to_owned(),
                queue,
            }),
            Err(error) => Err(error.into()),
        };
        match opened {
            Ok(held) => Ok(Self {
                connection,
                held,
                service: service.to_owned(),
                names: names.clone(),
            }),
            Err(error) => {
                let _ = connection.close(200, "not opened".into()).await;
                Err(error)
            }
        }
    }

    /// The dead-letter queue's name.
    pub fn queue(&self) -> &str {
        &self.held.queue
    }

    /// Messages in the queue when it was opened.
    pub fn waiting(&self) -> u64 {
        self.held.waiting
    }

    /// Calls `visit` with every dead letter in queue order, then gives them all back: none
    /// leaves the queue, and memory stays bounded whatever the queue's size.
    ///
    /// # Errors
    /// [`DeadLetterError::Broker`] when the broker fails while reading; the queue is given
    /// back as it was.
    pub async fn scan(
        self,
        mut visit: impl FnMut(DeadLetter),
    ) -> Result<ReadSummary, DeadLetterError> {
        self.scan_while(|letter| {
            visit(letter);
            ControlFlow::Continue(())
        })
        .await
    }

    /// As [`DeadLetterQueue::scan`], stopping early where `visit` breaks (an operator
    /// cancelled): the summary then counts the letters read so far.
    ///
    /// # Errors
    /// As [`DeadLetterQueue::scan`].
    pub async fn scan_while(
        self,
        mut visit: impl FnMut(DeadLetter) -> ControlFlow<()>,
    ) -> Result<ReadSummary, DeadLetterError> {
        let read = self
            .held
            .scan(|delivery| visit(DeadLetter::from_delivery(delivery)))
            .await;
        let waiting = self.held.waiting;
        self.release().await;
        Ok(ReadSummary {
            waiting,
            read: read?,
        })
    }

    /// Checks that the destination can take messages, before anything moves.
    ///
    /// # Errors
    /// [`DeadLetterError::UnknownTarget`] for a queue that does not exist.
    pub async fn check_destination(
        &self,
        destination: &Destination,
    ) -> Result<(), DeadLetterError> {
        let Some(queue) = self.target_queue(destination) else {
            return Ok(());
        };
        if queue_exists(&self.connection, &queue).await? {
            Ok(())
        } else {
            Err(DeadLetterError::UnknownTarget(queue))
        }
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
        self.held.release(&self.connection).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// The oldest dead letter of `service`, looked at and given back; `None` when the queue is
/// empty or another reader holds its head.
///
/// # Errors
/// As [`DeadLetterQueue::open`], except that another reader is not an error here.
pub async fn oldest(
    amqp: &AmqpConfig,
    names: &Names,
    service: &str,
) -> Result<Option<DeadLetter>, DeadLetterError> {
    let queue = match DeadLetterQueue::open(amqp, names, service).await {
        Ok(queue) => queue,
        Err(DeadLetterError::HeldElsewhere { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut reader = queue.held.reader();
    let first = reader.next().await;
    drop(reader);
    queue.release().await;
    Ok(first?.map(DeadLetter::from_delivery))
}
