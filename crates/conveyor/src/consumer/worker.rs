//! One broker session of a consumer: a connection, the topology, and its workers,
//! each with its own channel, prefetch window and batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use sqlx::PgPool;
use tokio::task::JoinSet;

use super::batch::{self, Incoming};
use super::db_error;
use super::outcome::Outcome;
use super::session_error::SessionError;
use super::settle::Settler;
use super::{Consumer, ConsumerOptions, DeadLetterKind, Registry};
use crate::amqp::{AmqpConfig, close_within};
use crate::backoff::Backoff;
use crate::publisher::ConfirmChannel;
use crate::shutdown::Shutdown;

/// The longest connecting, declaring the topology and opening the channels may take.
const SESSION_SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

const CLOSE_OK: u16 = 200;
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn run_session(
    consumer: &Consumer,
    amqp: &AmqpConfig,
    pool: &PgPool,
    shutdown: &Shutdown,
) -> Result<(), SessionError> {
    // A broker that accepts the connection and then answers nothing must not hold up a
    // shutdown; a connection dropped half-open is closed by lapin.
    let opening = tokio::time::timeout(SESSION_SETUP_TIMEOUT, open_session(consumer, amqp));
    let (connection, publishing, channels) = tokio::select! {
        opened = opening => opened.map_err(|_| SessionError::SetupTimeout(SESSION_SETUP_TIMEOUT))??,
        () = shutdown.fired() => return Ok(()),
    };
    let mut workers = JoinSet::new();
    for channels in channels {
        workers.spawn(work(
            Arc::clone(&consumer.registry),
            consumer.options.clone(),
            pool.clone(),
            channels,
            shutdown.clone(),
        ));
    }
    tracing::info!(service = %consumer.registry.service, workers = consumer.options.workers, "Consumer connected.");
    consumer
        .registry
        .stats
        .connected
        .store(true, Ordering::Relaxed);
    let mut result = Ok(());
    while let Some(joined) = workers.join_next().await {
        let failure = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(join_error) => SessionError::Worker(join_error.to_string()),
        };
        result = Err(failure);
        break;
    }
    if result.is_err() {
        // The others' unacknowledged deliveries return to the queue when the connection closes.
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
    consumer
        .registry
        .stats
        .connected
        .store(false, Ordering::Relaxed);
    // A connection blocked by an alarm reads nothing, not even a close: do not wait on it.
    futures_util::join!(
        close_within(&connection, "consumer stopped", CLOSE_TIMEOUT),
        close_within(&publishing, "consumer stopped", CLOSE_TIMEOUT),
    );
    result
}

/// Connects, declares the topology and opens each worker's channels.
async fn open_session(
    consumer: &Consumer,
    amqp: &AmqpConfig,
) -> Result<(Connection, Connection, Vec<Channels>), SessionError> {
    let connection = amqp.connect().await?;
    consumer.topology().declare(&connection).await?;
    // Copies of failed deliveries go out on a connection of their own: a broker alarm
    // blocks connections that publish, and the one that acknowledges must keep going.
    let publishing = amqp
        .named(format!(
            "{} (retries and dead letters)",
            amqp.connection_name()
        ))
        .connect()
        .await?;
    let registry = &consumer.registry;
    let queue = registry.names.service_queue(&registry.service);
    let mut channels = Vec::with_capacity(consumer.options.workers);
    for index in 0..consumer.options.workers {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(consumer.options.prefetch, BasicQosOptions::default())
            .await?;
        let failures =
            ConfirmChannel::enable(publishing.create_channel().await?, &amqp.user()).await?;
        let tag = format!(
            "{}-{index}-{}",
            registry.service,
            uuid::Uuid::new_v4().simple()
        );
        let deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channels.push(Channels {
            channel,
            failures,
            deliveries,
            tag,
        });
    }
    Ok((connection, publishing, channels))
}

/// A worker's channels: one to consume and acknowledge on, one (on the publishing
/// connection, in confirm mode) for copies of failed deliveries.
struct Channels {
    channel: Channel,
    failures: ConfirmChannel,
    /// The deliveries of the service's queue, consumed with `tag`.
    deliveries: lapin::Consumer,
    tag: String,
}

async fn work(
    registry: Arc<Registry>,
    options: ConsumerOptions,
    pool: PgPool,
    channels: Channels,
    shutdown: Shutdown,
) -> Result<(), SessionError> {
    let Channels {
        channel,
        failures,
        mut deliveries,
        tag,
    } = channels;
    let mut settler = Settler::new(channel.clone(), failures, options.publish_timeout);
    let queue = registry.names.service_queue(&registry.service);
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.fired() => break,
            confirmed = settler.next_confirmed() => {
                confirmed?;
                continue;
            }
            next = deliveries.next() => next,
        };
        let first = match first {
            Some(delivery) => delivery?,
            None => return Err(SessionError::Cancelled(queue)),
        };
        let mut batch = vec![Incoming::decode(first, &registry)];
        while batch.len() < options.batch_size {
            match deliveries.next().now_or_never() {
                Some(Some(delivery)) => batch.push(Incoming::decode(delivery?, &registry)),
                _ => break,
            }
        }
        if !handle_batch(&registry, &pool, &mut settler, batch, &shutdown).await? {
            break;
        }
    }
    // Stop taking deliveries; those prefetched but not handled return to the queue on close.
    // A broker that went away unnoticed answers nothing: no step waits on it for long.
    let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
    let answered = tokio::time::timeout(CLOSE_TIMEOUT, cancel).await.is_ok();
    settler.finish(CLOSE_TIMEOUT).await;
    if answered {
        let close = channel.close(CLOSE_OK, "consumer shutting down".into());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
    Ok(())
}

/// Handles, routes failures and acknowledges one batch. `Ok(false)` when shutdown came
/// while the database was unreachable: the batch stays unacknowledged and returns to the queue.
async fn handle_batch(
    registry: &Registry,
    pool: &PgPool,
    settler: &mut Settler,
    batch: Vec<Incoming>,
    shutdown: &Shutdown,
) -> Result<bool, SessionError> {
    let started = std::time::Instant::now();
    let outcomes = match outcomes_of(registry, pool, &batch, shutdown).await {
        Some(outcomes) => outcomes,
        None => return Ok(false),
    };
    tracing::debug!(
        service = %registry.service, size = batch.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "Batch handled."
    );
    count(registry, &batch, &outcomes);
    // A failed delivery is acknowledged once its retry or dead-letter copy is confirmed.
    settler.settle(registry, &batch, &outcomes).await?;
    Ok(true)
}

/// Times a batch's transaction may fail the same deterministic way before its deliveries
/// are tried one at a time, and a single one is dead-lettered.
const DETERMINISTIC_ATTEMPTS: u32 = 3;

/// The batch's outcomes, holding it while the database is unavailable; `None` when
/// shutdown came meanwhile. A transaction that fails for a reason of its own (a constraint
/// checked at commit, a permission) is not the database being away: after a few attempts the
/// deliveries are tried alone, and the one that still fails is dead-lettered.
async fn outcomes_of(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
    shutdown: &Shutdown,
) -> Option<Vec<Outcome>> {
    let mut backoff = Backoff::default();
    let mut refused = 0;
    loop {
        let error = match batch::process(registry, pool, batch).await {
            Ok(outcomes) => return Some(outcomes),
            Err(error) => error,
        };
        if db_error::is_unavailable(&error) {
            tracing::warn!(service = %registry.service, %error, "Database unavailable; holding the batch and retrying.");
        } else {
            refused += 1;
            tracing::warn!(service = %registry.service, %error, attempt = refused, "The database refused the batch's transaction.");
            if refused >= DETERMINISTIC_ATTEMPTS {
                return if let [single] = batch {
                    Some(vec![Outcome::dead_letter(
                        DeadLetterKind::Permanent,
                        format!(
                            "the database refused this event's transaction {refused} times: {error}"
                        ),
                        single.previous_attempts(),
                    )])
                } else {
                    one_at_a_time(registry, pool, batch, shutdown).await
                };
            }
        }
        if shutdown.sleep(backoff.next_delay()).await {
            return None;
        }
    }
}

/// Each delivery of `batch` in a transaction of its own.
async fn one_at_a_time(
    registry: &Registry,
    pool: &PgPool,
    batch: &[Incoming],
    shutdown: &Shutdown,
) -> Option<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    for single in batch.chunks(1) {
        let outcome = Box::pin(outcomes_of(registry, pool, single, shutdown)).await?;
        outcomes.extend(outcome);
    }
    Some(outcomes)
}

fn count(registry: &Registry, batch: &[Incoming], outcomes: &[Outcome]) {
    let stats = &registry.stats;
    let consumed = &crate::metrics::metrics().events_consumed;
    for (incoming, outcome) in batch.iter().zip(outcomes) {
        let (counter, label) = match outcome {
            Outcome::Handled => (&stats.handled, "handled"),
            Outcome::Duplicate => (&stats.duplicates, "duplicate"),
            Outcome::Retry { .. } => (&stats.retried, "retried"),
            Outcome::DeadLetter { .. } => (&stats.dead_lettered, "dead_lettered"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        consumed
            .with_label_values(&[registry.service.as_str(), incoming.event_type(), label])
            .inc();
    }
}
