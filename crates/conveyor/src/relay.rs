//! The outbox relay: publishes committed outbox rows with confirms and marks them sent only
//! after the broker confirmed them.
//!
//! Several relays may share one table: each takes a batch with `FOR UPDATE SKIP LOCKED`, so
//! no row is published by two relays at once, and a relay that dies releases its rows when
//! its transaction ends. Ordering: one relay publishes in insertion order; with several
//! relays, or after a failed batch is retried, events may arrive out of order, so consumers
//! order by the versions the events carry, not by arrival.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lapin::Connection;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};

use crate::amqp::{AmqpConfig, ConnectError};
use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::publisher::{ConfirmChannel, OutgoingMessage, PublishError};
use crate::shutdown::Shutdown;
use crate::store::OUTBOX_CHANNEL;
use crate::topology::Names;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows per transaction, all published with their confirms in flight together.
    pub batch_size: i64,
    /// The safety-net poll when no notification arrives.
    pub poll_interval: Duration,
    /// Published rows are deleted after this long.
    pub retention: Duration,
    /// How long the last flush may take at shutdown.
    pub flush_timeout: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            flush_timeout: Duration::from_secs(10),
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
        let mut session: Option<BrokerSession> = None;
        let mut listener: Option<PgListener> = None;
        let mut backoff = Backoff::default();
        let mut last_cleanup = Instant::now();
        while !shutdown.is_fired() {
            if listener.is_none() {
                listener = self.listen().await;
            }
            match self.relay_batch(&mut session).await {
                Ok(count) => {
                    backoff.reset();
                    if count < self.batch_len() {
                        self.wait_for_work(&mut listener, &shutdown).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Outbox relay pass failed; retrying.");
                    if matches!(error, RelayError::Publish(_) | RelayError::Connect(_)) {
                        session = None;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = shutdown.fired() => {}
                    }
                }
            }
            if last_cleanup.elapsed() > Duration::from_secs(60) {
                self.delete_expired().await;
                last_cleanup = Instant::now();
            }
        }
        self.flush(&mut session).await;
    }

    fn batch_len(&self) -> usize {
        usize::try_from(self.options.batch_size).unwrap_or(usize::MAX)
    }

    async fn listen(&self) -> Option<PgListener> {
        let connect = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(OUTBOX_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match connect.await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "Outbox relay cannot listen for notifications; polling.");
                None
            }
        }
    }

    async fn wait_for_work(&self, listener: &mut Option<PgListener>, shutdown: &Shutdown) {
        let notified = async {
            match listener.as_mut() {
                Some(active) => {
                    if active.recv().await.is_err() {
                        *listener = None;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(self.options.poll_interval) => {}
            () = shutdown.fired() => {}
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
        for row in &rows {
            ids.push(row.try_get::<i64, _>("id")?);
            messages.push(self.message_from_row(row)?);
        }
        if session.is_none() {
            let connection = self.amqp.connect().await?;
            let channel = ConfirmChannel::open(&connection)
                .await
                .map_err(PublishError::from)?;
            *session = Some(BrokerSession {
                _connection: connection,
                channel,
            });
        }
        if let Some(active) = session.as_ref() {
            active.channel.publish_all(&messages).await?;
        }
        sqlx::query("UPDATE conveyor.outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::debug!(count = ids.len(), "Relayed outbox events.");
        Ok(ids.len())
    }

    fn message_from_row(
        &self,
        row: &sqlx::postgres::PgRow,
    ) -> Result<OutgoingMessage, sqlx::Error> {
        let payload: Vec<u8> = row.try_get("payload")?;
        let trace: sqlx::types::Json<BTreeMap<String, String>> = row.try_get("trace")?;
        match Envelope::from_bytes(&payload) {
            Ok(envelope) => Ok(OutgoingMessage::event(&self.names, &envelope, &trace.0)),
            // Written by hand, not through `Outbox::add`: publish it as it is rather than block
            // the outbox behind it; consumers dead-letter it as malformed, where it is visible.
            Err(error) => {
                let event_id: uuid::Uuid = row.try_get("event_id")?;
                let event_type: String = row.try_get("event_type")?;
                tracing::error!(%event_id, %error, "Outbox row is not a valid envelope; publishing it as it is.");
                Ok(OutgoingMessage {
                    exchange: self.names.events_exchange(),
                    routing_key: event_type.clone(),
                    body: payload,
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
