//! The outbox relay: publishes committed outbox rows with confirms and marks them sent only
//! after the broker confirmed them.
//!
//! Several relays (and the workers within one) share one table: each takes a batch with
//! `FOR UPDATE SKIP LOCKED`, so no row is published by two at once, and one that dies
//! releases its rows when its transaction ends. Ordering: batches are published side by
//! side and a failed batch is retried later, so events may arrive out of order; consumers
//! order by the versions the events carry, and the saga by its per-order state, never by
//! arrival.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::Connection;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgPool, Row};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::amqp::{AmqpConfig, ConnectError};
use crate::backoff::Backoff;
use crate::publisher::{ConfirmChannel, OutgoingMessage, PublishError};
use crate::shutdown::Shutdown;
use crate::store::OUTBOX_CHANNEL;
use crate::topology::Names;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows per transaction, all published with their confirms in flight together.
    pub batch_size: i64,
    /// Batches in flight at once, each in its own transaction and channel: while one waits
    /// for its confirms, the next is read and published, so the broker stays busy.
    pub workers: usize,
    /// The safety-net poll when no notification arrives.
    pub poll_interval: Duration,
    /// Published rows are deleted after this long.
    pub retention: Duration,
    /// How long the last flush may take at shutdown.
    pub flush_timeout: Duration,
    /// The longest a batch waits for its confirms (a broker under a memory or disk alarm
    /// sends none); the batch's transaction is rolled back then and tried again later.
    pub confirm_timeout: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            workers: 2,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            flush_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
        }
    }
}

/// One relay pass failed; the loop backs off and tries again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox could not be read or updated: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(
        "the broker confirmed no batch within {0:?}: it may be blocked by a memory or disk alarm; the rows stay unsent and are tried again"
    )]
    ConfirmTimeout(Duration),
}

impl RelayError {
    /// Whether the broker session is suspect and must be opened anew.
    fn ends_session(&self) -> bool {
        !matches!(self, Self::Database(_))
    }
}

struct BrokerSession {
    _connection: Connection,
    channel: ConfirmChannel,
}

/// Publishes what the outbox holds until shut down.
pub struct OutboxRelay {
    pool: PgPool,
    amqp: AmqpConfig,
    names: Names,
    options: RelayOptions,
}

impl OutboxRelay {
    pub fn new(pool: PgPool, amqp: AmqpConfig, names: Names) -> Self {
        Self {
            pool,
            amqp,
            names,
            options: RelayOptions::default(),
        }
    }

    #[must_use]
    pub fn with_options(mut self, options: RelayOptions) -> Self {
        self.options = options;
        self
    }

    /// Relays until `shutdown` fires, then flushes what is left and returns. Lost broker or
    /// database connections are re-established with backoff; rows stay in the outbox
    /// meanwhile, so nothing committed is lost.
    pub async fn run(self, shutdown: Shutdown) {
        let relay = Arc::new(self);
        let work = Arc::new(Notify::new());
        let listener = tokio::spawn(Arc::clone(&relay).listen(Arc::clone(&work), shutdown.clone()));
        let mut workers = JoinSet::new();
        for index in 0..relay.options.workers.max(1) {
            let worker = Arc::clone(&relay).work(index, Arc::clone(&work), shutdown.clone());
            workers.spawn(worker);
        }
        while workers.join_next().await.is_some() {}
        listener.abort();
    }

    /// One worker: a batch at a time, in its own transaction and on its own channel.
    async fn work(self: Arc<Self>, index: usize, work: Arc<Notify>, shutdown: Shutdown) {
        let mut session: Option<BrokerSession> = None;
        let mut backoff = Backoff::default();
        let mut last_cleanup = Instant::now();
        while !shutdown.is_fired() {
            match self.relay_batch(&mut session).await {
                Ok(count) if count < self.batch_len() => {
                    backoff.reset();
                    tokio::select! {
                        () = work.notified() => {}
                        () = tokio::time::sleep(self.options.poll_interval) => {}
                        () = shutdown.fired() => {}
                    }
                }
                Ok(_) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(%error, "Outbox relay pass failed; retrying.");
                    if error.ends_session() {
                        session = None;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = shutdown.fired() => {}
                    }
                }
            }
            // One worker cleans up, so replicas and workers do not all delete at once.
            if index == 0 && last_cleanup.elapsed() > Duration::from_secs(60) {
                self.delete_expired().await;
                last_cleanup = Instant::now();
            }
        }
        self.flush(&mut session).await;
    }

    fn batch_len(&self) -> usize {
        usize::try_from(self.options.batch_size).unwrap_or(usize::MAX)
    }

    /// Wakes a worker after each commit that wrote to the outbox. A wake-up given while no
    /// worker waits is kept for the next one, so none is lost between two batches.
    async fn listen(self: Arc<Self>, work: Arc<Notify>, shutdown: Shutdown) {
        let mut backoff = Backoff::default();
        while !shutdown.is_fired() {
            let error = tokio::select! {
                error = notify_on_commit(&self.pool, &work) => error,
                () = shutdown.fired() => return,
            };
            tracing::warn!(%error, "Outbox relay cannot listen for notifications; polling meanwhile.");
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = shutdown.fired() => return,
            }
        }
    }

    /// Publishes what is left at shutdown, within the flush timeout.
    async fn flush(&self, session: &mut Option<BrokerSession>) {
        let deadline = Instant::now() + self.options.flush_timeout;
        while Instant::now() < deadline {
            match self.relay_batch(session).await {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "Outbox flush at shutdown failed; the rows stay for the next start.");
                    return;
                }
            }
        }
        tracing::warn!("Outbox flush at shutdown timed out; the rest stays for the next start.");
    }

    /// Publishes one batch of unsent rows; returns how many it published.
    ///
    /// # Errors
    /// [`RelayError`] when the database or broker fails; the rows stay unsent.
    async fn relay_batch(&self, session: &mut Option<BrokerSession>) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, event_id, event_type, payload, trace FROM conveyor.outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.options.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.try_get::<i64, _>("id")?);
            messages.push(self.message_from_row(row)?);
        }
        let channel = match session {
            Some(active) => &active.channel,
            None => {
                let connection = self.amqp.connect().await?;
                let channel = ConfirmChannel::open(&connection)
                    .await
                    .map_err(PublishError::from)?;
                &session
                    .insert(BrokerSession {
                        _connection: connection,
                        channel,
                    })
                    .channel
            }
        };
        // The rows stay locked while the confirms are awaited; the timeout bounds that.
        tokio::time::timeout(self.options.confirm_timeout, channel.publish_all(&messages))
            .await
            .map_err(|_| RelayError::ConfirmTimeout(self.options.confirm_timeout))??;
        sqlx::query("UPDATE conveyor.outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::debug!(count = ids.len(), "Relayed outbox events.");
        Ok(ids.len())
    }

    fn message_from_row(&self, row: PgRow) -> Result<OutgoingMessage, sqlx::Error> {
        let payload: Vec<u8> = row.try_get("payload")?;
        let trace: sqlx::types::Json<BTreeMap<String, String>> = row.try_get("trace")?;
        // The stored bytes are sent as they are; only the attributes AMQP mirrors are read.
        match OutgoingMessage::stored_event(&self.names, payload, &trace.0) {
            Ok(message) => Ok(message),
            // Written by hand, not through `Outbox::add`: publish it as it is rather than block
            // the outbox behind it; consumers dead-letter it as malformed, where it is visible.
            Err(error) => {
                let event_id: uuid::Uuid = row.try_get("event_id")?;
                let event_type: String = row.try_get("event_type")?;
                tracing::error!(%event_id, %error, "Outbox row is not a valid envelope; publishing it as it is.");
                Ok(OutgoingMessage {
                    exchange: self.names.events_exchange(),
                    routing_key: event_type.clone(),
                    body: row.try_get("payload")?,
                    properties: lapin::BasicProperties::default()
                        .with_message_id(event_id.to_string().into())
                        .with_type(event_type.into())
                        .with_delivery_mode(2),
                })
            }
        }
    }

    async fn delete_expired(&self) {
        let retention = chrono::Duration::from_std(self.options.retention).unwrap_or_default();
        let cutoff = chrono::Utc::now() - retention;
        let result = sqlx::query("DELETE FROM conveyor.outbox WHERE published_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "Could not delete expired outbox rows.");
        }
    }
}

/// Wakes a worker on every outbox notification, until the listening connection fails.
async fn notify_on_commit(pool: &PgPool, work: &Notify) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(OUTBOX_CHANNEL).await {
        return error;
    }
    loop {
        if let Err(error) = listener.recv().await {
            return error;
        }
        work.notify_one();
    }
}
