//! Gentle replay: the dead letters a filter picks go back to their service in growing
//! batches (1, 2, 5, 20, 50, …), one letter per flow in a batch, and the replay stops by
//! itself as soon as a letter of a batch fails again. Each batch's outcome is known before
//! the next one goes: every letter sent is either in the service's inbox (handled) or back in
//! its dead-letter queue carrying this replay's id. The way back is watched as it happens, on
//! a queue of the replay's own bound beside the dead-letter queue, so nothing is read from
//! the dead-letter queue to find it. That queue is exclusive to one connection, which makes it
//! the replay's lock too: a second console resuming the same replay is refused.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::letter::DeadLetter;
use super::{DeadLetterError, Destination, Filter, TransferOptions, transfer};
use crate::amqp::AmqpConfig;
use crate::topology::Names;

/// The batches' sizes; past the last, every batch has the last size.
pub const BATCH_SIZES: &[u64] = &[1, 2, 5, 20, 50, 100, 200, 500, 1000];
/// The lowest rate paced, in letters per second; a lower one is taken as none.
pub const MIN_RATE: f64 = 0.0001;
/// How often a batch's letters are looked for in the inbox.
const INBOX_POLL: Duration = Duration::from_millis(200);

/// What the operator asks of a running replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Go on.
    Run,
    /// Send nothing more until resumed (a batch in flight is still followed).
    Pause,
    /// Stop for good (a batch in flight is not waited for).
    Cancel,
}

/// Which letters, at what rate, under which id.
#[derive(Debug, Clone)]
pub struct GentleOptions {
    /// Which dead letters to replay.
    pub filter: Filter,
    /// Messages per second at most.
    pub rate: Option<f64>,
    /// The replay's id, on every copy and in the audit log.
    pub run_id: Uuid,
    /// The consumer name the service's inbox records (its service name).
    pub consumer: String,
}

/// Where a replay is, for a progress display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GentleProgress {
    /// Batches sent so far.
    pub batches: u64,
    /// The size of the batch under way (or next).
    pub batch_size: u64,
    /// Letters sent so far.
    pub sent: u64,
    /// Of those, handled by the service.
    pub handled: u64,
    /// Of those, back in the dead-letter queue.
    pub came_back: u64,
    /// Letters of the batch in flight neither handled nor back yet.
    pub in_flight: u64,
    /// Whether the operator paused it.
    pub paused: bool,
}

/// How a replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GentleEnd {
    /// No letter the filter picks is left (but those that came back from earlier runs).
    Drained,
    /// A letter of the last batch failed again; its error.
    FailureCameBack(String),
    /// The operator cancelled it.
    Cancelled,
}

impl GentleEnd {
    /// The outcome as the audit log writes it.
    pub fn describe(&self) -> String {
        match self {
            Self::Drained => "drained: no matching letter left".to_owned(),
            Self::FailureCameBack(error) => format!("stopped: the failure came back ({error})"),
            Self::Cancelled => "cancelled".to_owned(),
        }
    }
}

/// What a gentle replay did, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GentleReport {
    /// The figures at the end.
    pub progress: GentleProgress,
    /// How it ended.
    pub end: GentleEnd,
}

/// Replays `service`'s dead letters gently (see the module's text), calling `progress` as
/// it goes and obeying `control`.
///
/// # Errors
/// [`DeadLetterError`] when the broker or a transfer fails; letters not yet sent stay in
/// the dead-letter queue, and those sent were each confirmed before their original went.
/// [`DeadLetterError::HeldElsewhere`] naming the replay's own queue
/// ([`Names::replay_watch_queue`]) when another console runs this replay already; a
/// dead-letter queue another reader holds is waited for, up to a minute per batch.
pub async fn gentle_replay(
    amqp: &AmqpConfig,
    names: &Names,
    service: &str,
    inbox: &PgPool,
    options: &GentleOptions,
    mut control: watch::Receiver<Control>,
    mut progress: impl FnMut(&GentleProgress),
) -> Result<GentleReport, DeadLetterError> {
    let mut watch = WayBack::open(amqp, names, service, options.run_id).await?;
    let mut figures = GentleProgress::default();
    let started = tokio::time::Instant::now();
    let end = loop {
        figures.batch_size = batch_size(figures.batches);
        let go = loop {
            if wait_while_paused(&mut control, &mut figures, &mut progress).await == Control::Cancel
            {
                break Control::Cancel;
            }
            // Paused while waiting for the rate: wait for the resume again.
            match wait_for_the_rate(started, options.rate, figures.sent, &mut control).await {
                Control::Pause => {}
                other => break other,
            }
        };
        if go == Control::Cancel {
            break GentleEnd::Cancelled;
        }
        let batch = send_batch(amqp, names, service, options, figures.batch_size, &control).await?;
        if batch.came_back > 0 {
            figures.came_back += batch.came_back;
            break GentleEnd::FailureCameBack(format!(
                "{} letters this replay sent before it was interrupted failed again",
                batch.came_back
            ));
        }
        let sent = batch.sent;
        if sent.is_empty() {
            break if *control.borrow() == Control::Cancel {
                GentleEnd::Cancelled
            } else {
                GentleEnd::Drained
            };
        }
        figures.batches += 1;
        figures.sent += sent.len() as u64;
        let outcome = follow(
            &sent,
            inbox,
            options,
            &mut watch,
            &mut control,
            &mut figures,
            &mut progress,
        )
        .await?;
        if let Some(end) = outcome {
            break end;
        }
    };
    watch.close().await;
    figures.in_flight = 0;
    progress(&figures);
    Ok(GentleReport {
        progress: figures,
        end,
    })
}

fn batch_size(batches_sent: u64) -> u64 {
    let index = usize::try_from(batches_sent).unwrap_or(usize::MAX);
    BATCH_SIZES
        .get(index)
        .or(BATCH_SIZES.last())
        .copied()
        .unwrap_or(1)
}

async fn wait_while_paused(
    control: &mut watch::Receiver<Control>,
    figures: &mut GentleProgress,
    progress: &mut impl FnMut(&GentleProgress),
) -> Control {
    loop {
        let now = *control.borrow_and_update();
        figures.paused = now == Control::Pause;
        progress(figures);
        if now != Control::Pause || control.changed().await.is_err() {
            return now;
        }
    }
}

/// Waits until the letters sent so far keep to `rate` since `started` (a transfer paces
/// the letters of one batch; this paces the batches), unless cancelled meanwhile.
async fn wait_for_the_rate(
    started: tokio::time::Instant,
    rate: Option<f64>,
    sent: u64,
    control: &mut watch::Receiver<Control>,
) -> Control {
    // Below a letter every ~3 hours a rate means nothing here, and its waits would not fit
    // a Duration.
    let Some(rate) = rate.filter(|rate| *rate >= MIN_RATE) else {
        return *control.borrow();
    };
    let due = started + Duration::from_secs_f64(sent as f64 / rate);
    loop {
        let now = *control.borrow_and_update();
        if now == Control::Cancel {
            return now;
        }
        tokio::select! {
            () = tokio::time::sleep_until(due) => return *control.borrow(),
            changed = control.changed() => if changed.is_err() { return now },
        }
    }
}

/// What one batch's transfer did.
struct Batch {
    /// The ids of the letters sent.
    sent: Vec<String>,
    /// Letters of this replay found back in the queue (failed again while the replay was
    /// not watching: a console stopped mid-batch).
    came_back: u64,
}

/// How long a batch waits for the dead-letter queue while another reader holds it (an
/// operator's scan or `conveyor dlq` command), asking again every second.
const HELD_QUEUE_PATIENCE: u32 = 60;

async fn send_batch(
    amqp: &AmqpConfig,
    names: &Names,
    service: &str,
    options: &GentleOptions,
    size: u64,
    control: &watch::Receiver<Control>,
) -> Result<Batch, DeadLetterError> {
    // A cancel stops the batch before its next chunk; a pause lets it end.
    let stop = Arc::new(AtomicBool::new(false));
    let cancelled = {
        let (stop, mut control) = (stop.clone(), control.clone());
        tokio::spawn(async move {
            while *control.borrow_and_update() != Control::Cancel {
                if control.changed().await.is_err() {
                    return;
                }
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let transfer_options = TransferOptions {
        filter: options.filter.clone(),
        destination: Destination::Replay,
        rate: options.rate,
        limit: Some(size),
        window: TransferOptions::DEFAULT_WINDOW,
        run_id: options.run_id,
        one_per_flow: true,
        keep_ids: true,
        stop_on_came_back: true,
        stop: Some(stop.clone()),
    };
    let mut attempts = 0;
    let outcome = loop {
        match transfer(amqp, names, service, &transfer_options, |_| {}).await {
            Err(error)
                if matches!(error.source, DeadLetterError::HeldElsewhere { .. })
                    && attempts < HELD_QUEUE_PATIENCE
                    && !stop.load(Ordering::Relaxed) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other,
        }
    };
    cancelled.abort();
    let report = outcome.map_err(|error| error.source)?;
    Ok(Batch {
        sent: report.ids,
        came_back: report.came_back,
    })
}

/// Waits until every letter of `sent` is handled or back; `Some` ends the replay.
async fn follow(
    sent: &[String],
    inbox: &PgPool,
    options: &GentleOptions,
    watch: &mut WayBack,
    control: &mut watch::Receiver<Control>,
    figures: &mut GentleProgress,
    progress: &mut impl FnMut(&GentleProgress),
) -> Result<Option<GentleEnd>, DeadLetterError> {
    let ids: Vec<Uuid> = sent.iter().filter_map(|id| id.parse().ok()).collect();
    let (handled_before, back_before) = (figures.handled, figures.came_back);
    loop {
        let handled = handled_of(inbox, &options.consumer, &ids).await;
        let back: HashMap<&str, &str> = sent
            .iter()
            .filter_map(|id| Some((id.as_str(), watch.back.get(id)?.as_str())))
            .collect();
        figures.handled = handled_before + handled.len() as u64;
        figures.came_back = back_before + back.len() as u64;
        let settled = sent
            .iter()
            .filter(|id| {
                back.contains_key(id.as_str()) || id.parse().is_ok_and(|id| handled.contains(&id))
            })
            .count();
        figures.in_flight = (sent.len() - settled) as u64;
        progress(figures);
        if let Some(error) = back.values().next() {
            if figures.in_flight == 0 || *control.borrow() == Control::Cancel {
                return Ok(Some(GentleEnd::FailureCameBack((*error).to_owned())));
            }
        } else if figures.in_flight == 0 {
            return Ok(None);
        }
        if *control.borrow() == Control::Cancel {
            return Ok(Some(GentleEnd::Cancelled));
        }
        tokio::select! {
            arrived = watch.next() => arrived?,
            () = tokio::time::sleep(INBOX_POLL) => {}
            _ = control.changed() => {}
        }
    }
}

/// Which of `ids` the service's inbox holds; an inbox that cannot be read now holds none
/// (the replay waits, and looks again).
async fn handled_of(inbox: &PgPool, consumer: &str, ids: &[Uuid]) -> HashSet<Uuid> {
    sqlx::query_scalar::<_, Uuid>(
        "SELECT message_id FROM conveyor.inbox WHERE consumer = $1 AND message_id = ANY($2)",
    )
    .bind(consumer)
    .bind(ids)
    .fetch_all(inbox)
    .await
    .map(|found| found.into_iter().collect())
    .unwrap_or_default()
}

/// The replay's own queue on the dead-letter exchange: every letter the service dead-letters
/// is copied there too, and those this replay sent are noted with their error.
struct WayBack {
    connection: Connection,
    consumer: Consumer,
    run_id: String,
    /// Letters of this replay that came back: event id, error.
    back: HashMap<String, String>,
}

impl WayBack {
    async fn open(
        amqp: &AmqpConfig,
        names: &Names,
        service: &str,
        run_id: Uuid,
    ) -> Result<Self, DeadLetterError> {
        let connection = amqp.connect().await?;
        let queue = names.replay_watch_queue(&run_id.to_string());
        let channel = connection.create_channel().await?;
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        if let Err(error) = declared {
            let _ = connection.close(200, "not opened".into()).await;
            return Err(if crate::amqp::is_resource_locked(&error) {
                DeadLetterError::HeldElsewhere { queue, readers: 1 }
            } else {
                error.into()
            });
        }
        channel
            .queue_bind(
                queue.as_str().into(),
                names.dead_letter_exchange().as_str().into(),
                names.dead_letter_routing_key(service).as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "gentle-replay".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            connection,
            consumer,
            run_id: run_id.to_string(),
            back: HashMap::new(),
        })
    }

    /// Waits for the next dead letter of the service and notes it if it is this replay's.
    async fn next(&mut self) -> Result<(), DeadLetterError> {
        match self.consumer.next().await {
            Some(delivery) => {
                let letter = DeadLetter::from_delivery(delivery?);
                if letter.replay_run.as_deref() == Some(self.run_id.as_str())
                    && let Some(id) = letter.id
                {
                    let error = letter
                        .error
                        .unwrap_or_else(|| "(no error recorded)".to_owned());
                    self.back.insert(id, error);
                }
                Ok(())
            }
            None => Err(DeadLetterError::WatchClosed),
        }
    }

    async fn close(self) {
        let _ = self.connection.close(200, "replay ended".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_then_keep_the_last_size() {
        let sizes: Vec<u64> = (0..11).map(batch_size).collect();
        assert_eq!(sizes, [1, 2, 5, 20, 50, 100, 200, 500, 1000, 1000, 1000]);
    }
}
