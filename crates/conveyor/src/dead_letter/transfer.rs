//! Replay, move and purge: the dead letters a filter picks go to their destination as the
//! queue is read, each copy confirmed by the broker before its original is acknowledged, so
//! a transfer killed at any moment loses nothing. The rest stay held until the pass ends,
//! then return in their order.
//!
//! A pass holds what it read until it ends, and the broker closes a channel that holds a
//! delivery past its `consumer_timeout` (30 minutes by default). So a long, rate-limited
//! transfer works in windows: once a pass has run for [`TransferOptions::window`], it gives
//! everything back and a new pass starts from the head of the queue. A letter this run
//! already sent carries the run's id ([`crate::headers::REPLAY_RUN`]); when it fails again
//! and comes back, later passes leave it where it is.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::held_queue::Reader;
use super::{DeadLetter, DeadLetterError, DeadLetterQueue, Destination, Filter};
use crate::amqp::AmqpConfig;
use crate::publisher::OutgoingMessage;
use crate::topology::Names;

/// Full passes at most: a reader killed mid-transfer leaves messages that a quorum queue
/// gives back only once a later reader starts, so a pass that moved anything looks again.
const MAX_COMPLETE_PASSES: u32 = 3;
/// Passes at most that end before reading what they counted (another reader took letters).
const MAX_SHORT_PASSES: u32 = 5;
/// Copies confirmed together when no rate is asked for.
const UNLIMITED_CHUNK: usize = 100;

/// What to transfer, where, and how gently.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Which dead letters to transfer.
    pub filter: Filter,
    /// Where they go.
    pub destination: Destination,
    /// Messages per second at most.
    pub rate: Option<f64>,
    /// Transfer at most this many (oldest first).
    pub limit: Option<u64>,
    /// The longest a pass holds the queue; keep it well below the broker's consumer_timeout.
    pub window: Duration,
    /// This run's id, written on every copy.
    pub run_id: uuid::Uuid,
    /// At most one letter per correlation id (one flow) in this run; the others stay for a
    /// later run, so a replay does not hammer one flow.
    pub one_per_flow: bool,
    /// Keep the transferred letters' ids in the report (for a small `limit`: a gentle
    /// replay's batch). Letters without an id are then left where they are: nothing could
    /// tell when such a letter was handled.
    pub keep_ids: bool,
    /// Stop at the first letter this run sent that came back, sending nothing more (a
    /// gentle replay: that failure is its answer); otherwise such letters are left in place
    /// and counted.
    pub stop_on_came_back: bool,
    /// Set to stop the run before its next chunk (an operator cancelled it); what was sent
    /// stays sent, the rest stays in the queue.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl TransferOptions {
    /// The default window: a third of RabbitMQ's default consumer_timeout.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10 * 60);
}

/// Where a transfer is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The pass under way, counted from 1.
    pub pass: u32,
    /// Messages in the queue when this pass began, and read of them so far.
    pub waiting: u64,
    /// Messages this pass has read so far.
    pub read: u64,
    /// Transferred in this run so far.
    pub done: u64,
}

/// What a transfer did.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferReport {
    /// Letters transferred: sent on (or purged) and acknowledged.
    pub done: u64,
    /// Letters this run had sent already that came back (they failed again): left in place.
    pub came_back: u64,
    /// Passes over the queue that were started.
    pub passes: u32,
    /// Time spent reading and transferring (not connecting between passes).
    pub seconds: f64,
    /// SHA-256 of the transferred letters' ids, in order, one per line: an audit record
    /// holds this instead of the ids themselves.
    pub ids_sha256: String,
    /// The last pass could not read all it counted: letters may be left that match.
    pub stopped_early: bool,
    /// The transferred letters' ids, in order, when the options asked to keep them.
    pub ids: Vec<String>,
}

/// A transfer that stopped part-way; what it did before is in `report`, and every letter
/// not acknowledged is still in the dead-letter queue.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct TransferError {
    /// What the transfer did before it stopped.
    pub report: TransferReport,
    /// Why it stopped.
    #[source]
    pub source: DeadLetterError,
}

impl super::audit::AuditRecord {
    /// Turns a transfer's start record into its end record: finished or failed, with what
    /// it did either way.
    pub fn end_transfer(&mut self, outcome: &Result<TransferReport, TransferError>) {
        let (report, failure) = match outcome {
            Ok(report) => (report, None),
            Err(error) => (&error.report, Some(error)),
        };
        self.at = chrono::Utc::now();
        self.status = if failure.is_some() {
            super::audit::AuditStatus::Failed
        } else {
            super::audit::AuditStatus::Finished
        };
        self.done = Some(report.done);
        self.came_back = Some(report.came_back);
        self.ids_sha256 = Some(report.ids_sha256.clone());
        self.seconds = Some(report.seconds);
        self.error = failure.map(ToString::to_string);
    }
}

/// How one pass ended.
enum PassEnd {
    Complete,
    /// Fewer letters came than were counted.
    Short,
    WindowElapsed,
    LimitReached,
}

struct Run<'a, P> {
    options: &'a TransferOptions,
    progress: P,
    done: u64,
    came_back: u64,
    seconds: f64,
    ids: Sha256,
    kept_ids: Vec<String>,
    /// The flows this run sent a letter of, with `one_per_flow`.
    flows: std::collections::HashSet<String>,
    pacer: Pacer,
}

/// Sends the dead letters of `service` that `options.filter` picks to
/// `options.destination`. Checks the destination before anything moves.
///
/// # Errors
/// Before anything moved: as [`DeadLetterQueue::open`], or
/// [`DeadLetterError::UnknownTarget`]. After: a [`TransferError`] with what was done.
pub async fn transfer(
    amqp: &AmqpConfig,
    names: &Names,
    service: &str,
    options: &TransferOptions,
    progress: impl FnMut(Progress),
) -> Result<TransferReport, TransferError> {
    let mut run = Run {
        options,
        progress,
        done: 0,
        came_back: 0,
        seconds: 0.0,
        ids: Sha256::new(),
        kept_ids: Vec::new(),
        flows: std::collections::HashSet::new(),
        pacer: Pacer::new(options.rate),
    };
    let mut passes = 0;
    let mut complete_passes = 0;
    let mut short_passes = 0;
    let mut stopped_early = false;
    let outcome = loop {
        passes += 1;
        let queue = match DeadLetterQueue::open(amqp, names, service).await {
            Ok(queue) => queue,
            Err(error) => break Err(error),
        };
        if passes == 1
            && let Err(error) = queue.check_destination(&options.destination).await
        {
            queue.release().await;
            break Err(error);
        }
        let started = Instant::now();
        let done_before = run.done;
        let end = run.pass(&queue, passes).await;
        run.seconds += started.elapsed().as_secs_f64();
        queue.release().await;
        match end {
            Err(error) => break Err(error),
            Ok(PassEnd::LimitReached) => break Ok(()),
            Ok(PassEnd::WindowElapsed) => {}
            Ok(PassEnd::Short) => {
                short_passes += 1;
                if short_passes >= MAX_SHORT_PASSES {
                    stopped_early = true;
                    break Ok(());
                }
            }
            Ok(PassEnd::Complete) => {
                complete_passes += 1;
                // A pass that moved nothing has seen everything there is to move. (The
                // queue's count cannot tell: a killed reader's letters may come back later.)
                if run.done == done_before || complete_passes >= MAX_COMPLETE_PASSES {
                    break Ok(());
                }
            }
        }
    };
    let report = TransferReport {
        done: run.done,
        came_back: run.came_back,
        passes,
        seconds: run.seconds,
        ids_sha256: hex(&run.ids.finalize()),
        stopped_early,
        ids: run.kept_ids,
    };
    match outcome {
        Ok(()) => Ok(report),
        Err(source) => Err(TransferError { report, source }),
    }
}

impl<P: FnMut(Progress)> Run<'_, P> {
    fn limit_reached(&self, pending: usize) -> bool {
        self.options
            .limit
            .is_some_and(|limit| self.done + pending as u64 >= limit)
    }

    /// Whether the run was asked to stop.
    fn stopped(&self) -> bool {
        self.options
            .stop
            .as_ref()
            .is_some_and(|stop| stop.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether `letter` may go in this run: always, unless one letter per flow is asked
    /// for and its flow already has one. A letter with no correlation id is a flow of its own.
    fn first_of_its_flow(&mut self, letter: &DeadLetter) -> bool {
        match (&letter.correlation_id, self.options.one_per_flow) {
            (Some(flow), true) => self.flows.insert(flow.clone()),
            _ => true,
        }
    }

    /// Reads the queue once, sending the matching letters on in chunks as they come.
    async fn pass(
        &mut self,
        queue: &DeadLetterQueue,
        pass: u32,
    ) -> Result<PassEnd, DeadLetterError> {
        let started = Instant::now();
        let mut reader = queue.held.reader();
        let mut chunk = Vec::new();
        let chunk_size = self.pacer.chunk_size();
        // Counted anew each pass: a letter that came back is seen again by the next one.
        self.came_back = 0;
        let run_id = self.options.run_id.to_string();
        loop {
            if self.limit_reached(chunk.len()) {
                self.send(queue, &mut reader, &mut chunk).await?;
                return Ok(PassEnd::LimitReached);
            }
            let Some(delivery) = reader.next().await? else {
                break;
            };
            let letter = DeadLetter::from_delivery(delivery);
            if letter.replay_run.as_deref() == Some(run_id.as_str()) {
                self.came_back += 1;
                if self.options.stop_on_came_back {
                    // The chunk is not sent: its letters return to the queue.
                    return Ok(PassEnd::LimitReached);
                }
            } else if self.options.filter.matches(&letter)
                && (!self.options.keep_ids || letter.id.is_some())
                && self.first_of_its_flow(&letter)
            {
                chunk.push(letter);
            }
            if self.stopped() {
                // Nothing of the chunk was sent: its letters return to the queue.
                return Ok(PassEnd::LimitReached);
            }
            if chunk.len() >= chunk_size {
                self.send(queue, &mut reader, &mut chunk).await?;
                // Checked only after a send, so every window moves something.
                if started.elapsed() >= self.options.window {
                    return Ok(PassEnd::WindowElapsed);
                }
            }
            (self.progress)(Progress {
                pass,
                waiting: queue.held.waiting,
                read: reader.read(),
                done: self.done,
            });
        }
        if self.stopped() {
            return Ok(PassEnd::LimitReached);
        }
        self.send(queue, &mut reader, &mut chunk).await?;
        Ok(if self.limit_reached(0) {
            PassEnd::LimitReached
        } else if reader.complete() {
            PassEnd::Complete
        } else {
            PassEnd::Short
        })
    }

    /// Publishes copies of `chunk` with confirms, then acknowledges the originals.
    async fn send(
        &mut self,
        queue: &DeadLetterQueue,
        reader: &mut Reader<'_>,
        chunk: &mut Vec<DeadLetter>,
    ) -> Result<(), DeadLetterError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.pacer.wait_for(chunk.len()).await;
        let run_id = self.options.run_id.to_string();
        if let Some(target) = queue.target_queue(&self.options.destination) {
            let relays = crate::source::relays(&queue.names, &queue.service);
            let copies: Vec<_> = chunk
                .iter()
                .map(|letter| OutgoingMessage {
                    exchange: String::new(),
                    routing_key: target.clone(),
                    body: letter.body.clone(),
                    properties: letter.forwarded_properties(&run_id, &relays),
                })
                .collect();
            queue.held.confirms.publish_all(&copies).await?;
        }
        for letter in chunk.drain(..) {
            reader.ack(letter.delivery_tag).await?;
            self.ids
                .update(letter.id.as_deref().unwrap_or("-").as_bytes());
            self.ids.update(b"\n");
            if self.options.keep_ids {
                self.kept_ids.push(letter.id.clone().unwrap_or_default());
            }
            self.done += 1;
        }
        Ok(())
    }
}

/// Spaces chunks so that at most `rate` messages go per second, without a burst to catch
/// up after time spent reading letters that do not match.
struct Pacer {
    rate: Option<f64>,
    since: tokio::time::Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Self {
            rate,
            since: tokio::time::Instant::now(),
            sent: 0,
        }
    }

    /// A tenth of a second's worth, so the rate holds over short spans too.
    fn chunk_size(&self) -> usize {
        self.rate.map_or(UNLIMITED_CHUNK, |rate| {
            ((rate / 10.0) as usize).clamp(1, UNLIMITED_CHUNK)
        })
    }

    async fn wait_for(&mut self, count: usize) {
        if let Some(due) = self.schedule(count, tokio::time::Instant::now()) {
            tokio::time::sleep_until(due).await;
        }
    }

    /// Counts `count` more sent at `now`, and says until when to wait first (`None`: go at
    /// once). After a pause of over a second (the operator's, or a slow broker), the count
    /// starts again, so the time lost is not made up in a burst.
    fn schedule(
        &mut self,
        count: usize,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        let rate = self.rate?;
        let due = self.since + Duration::from_secs_f64(self.sent as f64 / rate);
        let wait = if now > due + Duration::from_secs(1) {
            self.since = now;
            self.sent = 0;
            None
        } else {
            (due > now).then_some(due)
        };
        self.sent += count as u64;
        wait
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock moves only when the pacer says to wait, so the figures are exact.
    #[test]
    fn the_pacer_holds_the_rate_and_does_not_burst_after_a_pause() {
        let start = tokio::time::Instant::now();
        let mut pacer = Pacer {
            rate: Some(100.0),
            since: start,
            sent: 0,
        };
        assert_eq!(pacer.chunk_size(), 10);
        let mut now = start;
        let send = |pacer: &mut Pacer, now: &mut tokio::time::Instant| {
            if let Some(due) = pacer.schedule(10, *now) {
                *now = due;
            }
        };
        for _ in 0..10 {
            send(&mut pacer, &mut now);
        }
        // 100 sent: the tenth chunk was due at 0.9 s.
        assert_eq!(now - start, Duration::from_millis(900));
        now += Duration::from_secs(5);
        let resumed = now;
        send(&mut pacer, &mut now);
        send(&mut pacer, &mut now);
        assert_eq!(now - resumed, Duration::from_millis(100));
    }

    #[test]
    fn digests_are_lowercase_hex() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(hex(&Sha256::digest(b"")).len(), 64);
    }
}
