//! One broker session of a consumer: a connection, the topology, and `concurrency` workers,
//! each with its own channel, prefetch window and batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use sqlx::PgPool;
use tokio::task::JoinSet;

use super::batch::{self, Incoming};
use super::outcome::Outcome;
use super::{Consumer, ConsumerOptions, Registry, sleep_or_shutdown};
use crate::amqp::{AmqpConfig, ConnectError};
use crate::backoff::Backoff;
use crate::publisher::{ConfirmChannel, PublishError};
use crate::shutdown::Shutdown;
use crate::topology::TopologyError;

/// Why a session ended early; the consumer reconnects after it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("the broker connection failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the broker cancelled the consumer on {0}")]
    Cancelled(String),
    #[error("a worker stopped unexpectedly: {0}")]
    Worker(String),
}

const CLOSE_OK: u16 = 200;

pub(crate) async fn run_session(
    consumer: &Consumer,
    amqp: &AmqpConfig,
    pool: &PgPool,
    shutdown: &Shutdown,
) -> Result<(), SessionError> {
    let connection = amqp.connect().await?;
    consumer.topology().declare(&connection).await?;
    let mut workers = JoinSet::new();
    for index in 0..consumer.options.concurrency {
        let channel = connection.create_channel().await?;
        workers.spawn(work(
            Arc::clone(&consumer.registry),
            consumer.options.clone(),
            pool.clone(),
            channel,
            index,
            shutdown.clone(),
        ));
    }
    tracing::info!(service = %consumer.registry.service, workers = consumer.options.concurrency, "Consumer connected.");
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
    let _ = connection.close(CLOSE_OK, "consumer stopped".into()).await;
    result
}

async fn work(
    registry: Arc<Registry>,
    options: ConsumerOptions,
    pool: PgPool,
    channel: Channel,
    index: usize,
    shutdown: Shutdown,
) -> Result<(), SessionError> {
    channel
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await?;
    let confirms = ConfirmChannel::enable(channel.clone()).await?;
    let queue = registry.names.service_queue(&registry.service);
    let tag = format!(
        "{}-{index}-{}",
        registry.service,
        uuid::Uuid::new_v4().simple()
    );
    let mut deliveries = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.fired() => break,
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
        if !handle_batch(&registry, &pool, &confirms, batch, &shutdown).await? {
            break;
        }
    }
    // Stop taking deliveries; those prefetched but not handled return to the queue on close.
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    let _ = channel
        .close(CLOSE_OK, "consumer shutting down".into())
        .await;
    Ok(())
}

/// Handles, routes failures and acknowledges one batch. `Ok(false)` when shutdown came
/// while the database was unreachable: the batch stays unacknowledged and returns to the queue.
async fn handle_batch(
    registry: &Registry,
    pool: &PgPool,
    confirms: &ConfirmChannel,
    batch: Vec<Incoming>,
    shutdown: &Shutdown,
) -> Result<bool, SessionError> {
    let mut backoff = Backoff::default();
    let started = std::time::Instant::now();
    let outcomes = loop {
        match batch::process(registry, pool, &batch).await {
            Ok(outcomes) => {
                tracing::debug!(
                    service = %registry.service, size = batch.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "Batch handled."
                );
                break outcomes;
            }
            Err(error) => {
                tracing::warn!(service = %registry.service, %error, "Database unavailable; holding the batch and retrying.");
                if sleep_or_shutdown(backoff.next_delay(), shutdown).await {
                    return Ok(false);
                }
            }
        }
    };
    let failures: Vec<_> = outcomes
        .iter()
        .zip(&batch)
        .filter_map(|(outcome, incoming)| {
            outcome.message(&registry.names, &registry.service, &incoming.delivery)
        })
        .collect();
    // The failed messages must be safe in their retry or dead-letter queue before the ack.
    confirms.publish_all(&failures).await?;
    count(registry, &outcomes);
    if let Some(last) = batch.last() {
        confirms
            .channel()
            .basic_ack(
                last.delivery.delivery_tag,
                BasicAckOptions { multiple: true },
            )
            .await?;
    }
    Ok(true)
}

fn count(registry: &Registry, outcomes: &[Outcome]) {
    let stats = &registry.stats;
    for outcome in outcomes {
        let counter = match outcome {
            Outcome::Handled => &stats.handled,
            Outcome::Duplicate => &stats.duplicates,
            Outcome::Retry { .. } => &stats.retried,
            Outcome::DeadLetter { .. } => &stats.dead_lettered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
