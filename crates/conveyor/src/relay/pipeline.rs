//! The leading relay's pipeline, three stages joined by bounded channels: a reader
//! publishes batch after batch without waiting for their confirms, a confirmer awaits each
//! batch's confirms in turn, and a recorder writes each outcome to the outbox. Neither the
//! broker nor the database waits for the other, and no database transaction stays open
//! while the broker confirms.
//! The reader keeps its place with a `Cursor`; beside it, the scheduler moves due
//! scheduled events into the outbox for the reader to find.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lapin::PublisherConfirm;
use tokio::sync::{Notify, mpsc};

use super::cursor::Cursor;
use super::rows::Pending;
use super::{OutboxRelay, RelayError};
use crate::publisher::{ConfirmChannel, OutgoingMessage, PublishError};
use crate::shutdown::Shutdown;

/// Batches published and not yet settled, at most.
const BATCHES_IN_FLIGHT: usize = 4;

/// The longest the broker may take to answer the connection's close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A published batch whose confirms are awaited.
struct InFlight {
    rows: Vec<Pending>,
    messages: Vec<OutgoingMessage>,
    confirms: Vec<PublisherConfirm>,
}

/// A batch the broker answered for, to be recorded.
struct Confirmed {
    rows: Vec<Pending>,
    outcomes: Vec<Result<(), PublishError>>,
}

/// What the reader and the recorder share: the ids published and not yet settled (left out
/// of reads, so nothing goes out twice), and those the broker refused (read again once their
/// backoff has passed).
#[derive(Default)]
struct Shared {
    in_flight: Mutex<HashSet<i64>>,
    refused: Mutex<Refused>,
    /// Why the reader stopped, kept until the batches it handed on are settled.
    reader_failure: Mutex<Option<RelayError>>,
}

impl Shared {
    fn snapshot(&self) -> Vec<i64> {
        lock(&self.in_flight).iter().copied().collect()
    }

    fn add(&self, rows: &[Pending]) {
        lock(&self.in_flight).extend(rows.iter().map(|row| row.id));
    }

    fn settled(&self, rows: &[Pending], refused: &[i64]) {
        let mut in_flight = lock(&self.in_flight);
        for row in rows {
            in_flight.remove(&row.id);
        }
        let mut backoff = lock(&self.refused);
        for row in rows {
            if refused.contains(&row.id) {
                backoff.refused(row.id, Instant::now());
            } else {
                backoff.sent(row.id);
            }
        }
    }

    fn take_due(&self) -> Vec<i64> {
        lock(&self.refused).take_due(Instant::now())
    }

    fn next_due(&self) -> Option<Instant> {
        lock(&self.refused).next_due()
    }
}

/// The first wait before a refused row is sent again; each refusal doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest wait between two sends of a refused row.
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Rows the broker refused and when each may go again: a nack means "not now" (a queue
/// electing a new leader takes seconds), so a row is sent again with a growing pause, for as
/// long as it takes, without holding up the rows behind it.
#[derive(Default)]
struct Refused {
    /// Refusals in a row, per row id, until it is sent.
    times: HashMap<i64, u32>,
    /// Rows waiting for their next send, and when it is due.
    waiting: HashMap<i64, Instant>,
}

impl Refused {
    fn refused(&mut self, id: i64, now: Instant) {
        let times = self.times.entry(id).or_default();
        *times += 1;
        self.waiting.insert(id, now + retry_delay(*times));
    }

    fn sent(&mut self, id: i64) {
        self.times.remove(&id);
        self.waiting.remove(&id);
    }

    fn take_due(&mut self, now: Instant) -> Vec<i64> {
        let due: Vec<i64> = self
            .waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.waiting.remove(id);
        }
        due
    }

    fn next_due(&self) -> Option<Instant> {
        self.waiting.values().min().copied()
    }
}

/// The pause after a row's `times`-th refusal in a row.
fn retry_delay(times: u32) -> Duration {
    let doublings = times.saturating_sub(1).min(16);
    (FIRST_RETRY * 2u32.pow(doublings)).min(LONGEST_RETRY)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relays until `stop` fires, then flushes what is left (within the flush timeout) and
/// returns `Ok`; returns the error when the broker or the database fails, leaving every
/// unsettled row in the outbox to be read again.
pub(super) async fn run(
    relay: &OutboxRelay,
    work: &Notify,
    stop: &Shutdown,
) -> Result<(), RelayError> {
    let connection = relay.amqp.connect().await?;
    let timeout = relay.options.confirm_timeout;
    let channel = tokio::time::timeout(
        timeout,
        ConfirmChannel::open(&connection, &relay.amqp.user()),
    )
    .await
    .map_err(|_| RelayError::ConfirmTimeout(timeout))?
    .map_err(PublishError::from)?;
    let (to_settle, settling) = mpsc::channel(BATCHES_IN_FLIGHT);
    let (to_record, recording) = mpsc::channel(BATCHES_IN_FLIGHT);
    let shared = Shared::default();
    // When the reader fails, its error waits while the batches already handed on are
    // confirmed and recorded: a channel the broker closed fails the reader's next publish
    // with the channel's state alone, while the confirms in flight carry the broker's
    // reason, which decides what the relay does next (`RelayError::may_be_one_rows_refusal`).
    let (reader_ended, pipeline_ended) = Shutdown::new();
    let reader = async {
        let read = read_and_publish(relay, &channel, &shared, to_settle, work, stop).await;
        if let Err(error) = read {
            *lock(&shared.reader_failure) = Some(error);
        }
        reader_ended.fire();
        Ok(())
    };
    // Due events are moved only while this pipeline can send them: see `schedule`.
    let scheduler = super::schedule::run(relay, &channel, stop, &pipeline_ended);
    let result = tokio::try_join!(
        reader,
        scheduler,
        confirm(relay, settling, to_record),
        record(relay, &shared, recording),
    );
    crate::amqp::close_within(&connection, "relay stopped", CLOSE_TIMEOUT).await;
    let reader_failure = lock(&shared.reader_failure).take();
    result.and_then(|_| reader_failure.map_or(Ok(()), Err))
}

async fn read_and_publish(
    relay: &OutboxRelay,
    channel: &ConfirmChannel,
    shared: &Shared,
    to_settle: mpsc::Sender<InFlight>,
    work: &Notify,
    stop: &Shutdown,
) -> Result<(), RelayError> {
    let mut cursor = Cursor::new();
    let mut flush_until = None;
    let mut after_idle = true;
    let mut swept = false;
    loop {
        if stop.is_fired() {
            let until =
                *flush_until.get_or_insert_with(|| Instant::now() + relay.options.flush_timeout);
            if Instant::now() > until {
                tracing::warn!(
                    "Outbox flush at shutdown timed out; the rest stays for the next start."
                );
                return Ok(());
            }
        }
        let (rows, caught_up) = read(relay, &mut cursor, shared, after_idle).await?;
        after_idle = rows.is_empty();
        if rows.is_empty() {
            if stop.is_fired() {
                if swept {
                    return Ok(());
                }
                // Rows that committed out of order may sit behind the cursor, and the
                // reader's usual rechecks come too late for a process about to stop.
                cursor.sweep();
                swept = true;
                continue;
            }
            wait_for_work(relay, shared, work, stop).await;
            continue;
        }
        let messages: Vec<OutgoingMessage> = rows.iter().map(|row| row.message.clone()).collect();
        // Sending can block too: a broker under a memory or disk alarm stops reading.
        let confirms =
            tokio::time::timeout(relay.options.confirm_timeout, channel.send_all(&messages))
                .await
                .map_err(|_| RelayError::ConfirmTimeout(relay.options.confirm_timeout))??;
        shared.add(&rows);
        let batch = InFlight {
            rows,
            messages,
            confirms,
        };
        if to_settle.send(batch).await.is_err() {
            // The confirmer stopped with an error, which `run` reports.
            return Ok(());
        }
        if caught_up && !stop.is_fired() {
            // The read saw every row committed after the cursor, and each later commit
            // notifies: reading again before one would find nothing, at a moderate rate
            // a read per batch that costs the database as much as the one that found rows.
            wait_for_work(relay, shared, work, stop).await;
            after_idle = true;
        }
    }
}

/// Waits for a commit to the outbox, a refused row coming due, the poll interval or the stop.
async fn wait_for_work(relay: &OutboxRelay, shared: &Shared, work: &Notify, stop: &Shutdown) {
    tokio::select! {
        () = work.notified() => {}
        () = tokio::time::sleep(idle_wait(relay, shared)) => {}
        () = stop.fired() => {}
    }
}

/// The next rows to send: missing ids that turned up, else the rows after the cursor; and
/// whether the read after the cursor saw every row committed there (never after a recheck,
/// which reads no further than the missing ids).
async fn read(
    relay: &OutboxRelay,
    cursor: &mut Cursor,
    shared: &Shared,
    after_idle: bool,
) -> Result<(Vec<Pending>, bool), sqlx::Error> {
    cursor.recheck(shared.take_due());
    let in_flight = shared.snapshot();
    if let Some(ids) = cursor.due_rechecks(after_idle) {
        let found = relay.read_ids(&ids, &in_flight).await?;
        if !found.is_empty() {
            let found_ids: Vec<i64> = found.iter().map(|row| row.id).collect();
            cursor.found(&found_ids);
            return Ok((found, false));
        }
    }
    let from = cursor.next_read();
    // Rows in flight are all behind the cursor: only a full read needs to leave them out
    // (and checking each row against them costs the database).
    let skip: &[i64] = if from == 0 { &in_flight } else { &[] };
    let (rows, all_seen) = relay.read_pending(from, skip).await?;
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
    cursor.read(from, &ids);
    Ok((rows, all_seen))
}

/// How long an idle reader sleeps: a commit wakes it sooner, and so does a refused row's
/// next send.
fn idle_wait(relay: &OutboxRelay, shared: &Shared) -> Duration {
    let poll = relay.options.poll_interval;
    shared.next_due().map_or(poll, |due| {
        due.saturating_duration_since(Instant::now()).min(poll)
    })
}

/// Awaits each batch's confirms in turn and hands the outcomes on to be recorded.
async fn confirm(
    relay: &OutboxRelay,
    mut settling: mpsc::Receiver<InFlight>,
    to_record: mpsc::Sender<Confirmed>,
) -> Result<(), RelayError> {
    while let Some(batch) = settling.recv().await {
        let timeout = relay.options.confirm_timeout;
        let confirmed = ConfirmChannel::confirmations(batch.confirms, &batch.messages);
        let outcomes = tokio::time::timeout(timeout, confirmed)
            .await
            .map_err(|_| RelayError::ConfirmTimeout(timeout))??;
        let confirmed = Confirmed {
            rows: batch.rows,
            outcomes,
        };
        if to_record.send(confirmed).await.is_err() {
            // The recorder stopped with an error, which `run` reports.
            return Ok(());
        }
    }
    Ok(())
}

/// Records each confirmed batch's outcome in the outbox, beside the confirming of the next.
async fn record(
    relay: &OutboxRelay,
    shared: &Shared,
    mut recording: mpsc::Receiver<Confirmed>,
) -> Result<(), RelayError> {
    while let Some(batch) = recording.recv().await {
        let refused = relay.settle(&batch.rows, batch.outcomes).await?;
        shared.settled(&batch.rows, &refused);
        tracing::debug!(count = batch.rows.len(), "Relayed outbox events.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_row_waits_longer_after_each_refusal_up_to_the_longest_wait() {
        let delays: Vec<u128> = (1..=8)
            .map(|times| retry_delay(times).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(retry_delay(u32::MAX), LONGEST_RETRY);
    }

    #[test]
    fn a_refused_row_is_due_after_its_pause_and_forgotten_once_sent() {
        let mut refused = Refused::default();
        let start = Instant::now();
        refused.refused(7, start);
        refused.refused(7, start);
        assert!(
            refused.take_due(start).is_empty(),
            "not due before its pause"
        );
        assert_eq!(refused.next_due(), Some(start + Duration::from_millis(200)));
        assert_eq!(refused.take_due(start + Duration::from_millis(200)), [7]);
        assert!(refused.take_due(start + Duration::from_secs(60)).is_empty());
        refused.sent(7);
        refused.refused(7, start);
        assert_eq!(
            refused.next_due(),
            Some(start + FIRST_RETRY),
            "counting starts over"
        );
    }
}
