//! The outbox relay: publishes committed outbox rows with confirms and marks them sent only
//! after the broker confirmed them.
//!
//! Every instance of a service runs a relay; the one holding the outbox's leader lock
//! (`election`) publishes and the others stand by, taking over within a poll interval when
//! the leader's database session ends. The leader's `pipeline` reads and publishes batch
//! after batch while earlier ones await their confirms; `rows` records each row's fate: a
//! confirmed row leaves the outbox for the log of what was sent, a refused one keeps its
//! error and is sent again with backoff (a nack is "not now"), and only a row the broker
//! will never take is parked; `isolate` finds that row when the broker closed the channel
//! without naming it. A crash anywhere leaves unconfirmed rows in the outbox, to be sent
//! again (at least once; consumers' inboxes drop the repeats).
//!
//! Ordering: rows are sent oldest first, but a row whose transaction committed late, or a
//! batch sent again after a failure, arrives after newer ones; consumers order by the
//! versions the events carry, and the saga by its per-order state, never by arrival.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinSet;

mod cursor;
mod election;
mod isolate;
mod pipeline;
mod rows;
mod schedule;

use election::Leadership;

use crate::amqp::{AmqpConfig, ConnectError};
use crate::backoff::Backoff;
use crate::publisher::PublishError;
use crate::shutdown::Shutdown;
use crate::store::OUTBOX_CHANNEL;
use crate::topology::Names;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Rows read and published together.
    pub batch_size: i64,
    /// The safety-net poll when no notification arrives.
    pub poll_interval: Duration,
    /// The log of what was sent forgets an event after this long.
    pub retention: Duration,
    /// The inbox forgets a handled event after this long. A redelivery or a dead letter
    /// replayed later than this is handled again, so keep it above the longest time a dead
    /// letter may wait for its replay. The leading relay purges it, one per database.
    pub inbox_retention: Duration,
    /// How long the last flush may take at shutdown (the leading relay flushes; standbys
    /// leave their rows to it).
    pub flush_timeout: Duration,
    /// The longest a batch waits to be sent and confirmed (a broker under a memory or disk
    /// alarm takes nothing and confirms nothing); the relay then opens a new session and
    /// sends the unconfirmed rows again.
    pub confirm_timeout: Duration,
    /// A row larger than this is parked at once: the broker would refuse it and close the
    /// channel (RabbitMQ's `max_message_size`; broker-config sets 16 MiB). Keep it at or
    /// below the broker's: a larger body is found by the one-by-one pass instead, later.
    pub max_message_bytes: usize,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            inbox_retention: Duration::from_secs(14 * 24 * 3600),
            flush_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One relay pass failed; the loop backs off and tries again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox could not be read or updated.
    #[error("the outbox could not be read or updated: {0}")]
    Database(#[from] sqlx::Error),
    /// Opening a channel or publishing a batch failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// No broker could be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The pipeline's channel closed while the relay had nothing to send.
    #[error(
        "the broker channel closed (the broker went away, or closed it); the relay opens a new session"
    )]
    ChannelClosed,
    /// The broker answered nothing within this long ([`RelayOptions::confirm_timeout`]).
    #[error(
        "the broker answered nothing within {0:?} (a batch's confirms, or opening the channel): it may be blocked by a memory or disk alarm; the rows stay unsent and are tried again"
    )]
    ConfirmTimeout(Duration),
}

impl RelayError {
    /// Whether the broker closed the channel with PRECONDITION_FAILED, which it does for
    /// one message it will never take (over `max_message_size`, a `user_id` not the
    /// connection's) without saying which of the batch's messages it was.
    fn may_be_one_rows_refusal(&self) -> bool {
        matches!(self, Self::Publish(PublishError::Broker(error)) if crate::amqp::is_precondition_failed(error))
    }
}

/// Publishes what the outbox holds until shut down.
pub struct OutboxRelay {
    pool: PgPool,
    amqp: AmqpConfig,
    names: Names,
    options: RelayOptions,
}

impl OutboxRelay {
    /// A relay of `pool`'s outbox to the broker at `amqp`, with the default options.
    pub fn new(pool: PgPool, amqp: AmqpConfig, names: Names) -> Self {
        Self {
            pool,
            amqp,
            names,
            options: RelayOptions::default(),
        }
    }

    /// Paces the relay with `options` instead of the defaults.
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
        let mut backoff = Backoff::default();
        while !shutdown.is_fired() {
            let interval = relay.options.poll_interval;
            match Leadership::acquire(&relay.pool, interval, &shutdown).await {
                Ok(Some(leadership)) => {
                    backoff.reset();
                    Arc::clone(&relay).lead(leadership, &shutdown).await;
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "Outbox relay cannot reach the database to take its turn; retrying.");
                    shutdown.sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Relays while elected: a listener and the pipeline, until shutdown or lost
    /// leadership; then the pipeline flushes what is left.
    async fn lead(self: Arc<Self>, mut leadership: Leadership, shutdown: &Shutdown) {
        tracing::info!("This instance relays the outbox.");
        let (stop, stopping) = Shutdown::new();
        let work = Arc::new(Notify::new());
        // Both end with the lead, however it ends (a set aborts its tasks when dropped).
        let mut helpers = JoinSet::new();
        helpers.spawn(Arc::clone(&self).listen(Arc::clone(&work), stopping.clone()));
        helpers.spawn(Arc::clone(&self).clean_up(stopping.clone()));
        let relaying = self.relay_until_stopped(&work, &stopping);
        tokio::pin!(relaying);
        tokio::select! {
            () = &mut relaying => {}
            () = shutdown.fired() => {
                stop.fire();
                relaying.await;
            }
            error = leadership.lost(self.options.poll_interval) => {
                tracing::warn!(%error, "Outbox relay lost its turn (its database session ended); standing by.");
                stop.fire();
                relaying.await;
            }
        }
        helpers.abort_all();
    }

    /// Runs the pipeline, opening it anew with backoff after a failure, until `stop` fires
    /// and it has flushed. After a channel closed by a refusal that may be one row's, the
    /// next pass sends one row at a time to find it.
    async fn relay_until_stopped(&self, work: &Notify, stop: &Shutdown) {
        let mut backoff = Backoff::default();
        let mut find_refused_row = false;
        loop {
            let result = if find_refused_row {
                isolate::run(self).await
            } else {
                pipeline::run(self, work, stop)
                    .await
                    .map(|()| isolate::Pass::Done)
            };
            match result {
                Ok(isolate::Pass::Done) => return,
                Ok(isolate::Pass::Isolated) => find_refused_row = false,
                Err(error) => {
                    find_refused_row = error.may_be_one_rows_refusal();
                    tracing::warn!(%error, "Outbox relay failed; its unconfirmed rows stay and are sent again.");
                    if stop.is_fired() {
                        return;
                    }
                    stop.sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Forgets old records on taking the lead, then once a minute.
    async fn clean_up(self: Arc<Self>, stop: Shutdown) {
        while !stop.is_fired() {
            self.delete_expired(&stop).await;
            stop.sleep(Duration::from_secs(60)).await;
        }
    }

    /// Wakes a worker after each commit that wrote to the outbox. A wake-up given while no
    /// worker waits is kept for the next one, so none is lost between two batches.
    async fn listen(self: Arc<Self>, work: Arc<Notify>, shutdown: Shutdown) {
        // Listening holds a connection for good: its own, not one of the service's pool.
        let own = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let mut backoff = Backoff::default();
        while !shutdown.is_fired() {
            let error = tokio::select! {
                error = notify_on_commit(&own, &work) => error,
                () = shutdown.fired() => return,
            };
            tracing::warn!(%error, "Outbox relay cannot listen for notifications; polling meanwhile.");
            if shutdown.sleep(backoff.next_delay()).await {
                return;
            }
        }
    }

    /// Forgets what was sent, and what was handled, longer ago than their retentions: a
    /// bounded chunk per statement so no delete holds its locks for long, chunk after chunk
    /// until nothing old is left.
    async fn delete_expired(&self, stop: &Shutdown) {
        let cutoff = |retention: Duration| {
            chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default()
        };
        let sent_before = cutoff(self.options.retention);
        // Rows published before the log existed were kept in the outbox itself.
        let work = [
            (
                "DELETE FROM conveyor.published WHERE ctid IN (
                     SELECT ctid FROM conveyor.published WHERE published_at < $1 LIMIT 10000)",
                sent_before,
            ),
            (
                "DELETE FROM conveyor.outbox WHERE ctid IN (
                     SELECT ctid FROM conveyor.outbox WHERE published_at < $1 LIMIT 10000)",
                sent_before,
            ),
            (
                "DELETE FROM conveyor.inbox WHERE ctid IN (
                     SELECT ctid FROM conveyor.inbox WHERE handled_at < $1 LIMIT 10000)",
                cutoff(self.options.inbox_retention),
            ),
        ];
        for (statement, before) in work {
            while !stop.is_fired() {
                match sqlx::query(statement)
                    .bind(before)
                    .execute(&self.pool)
                    .await
                {
                    Ok(done) if done.rows_affected() == 10000 => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "Could not delete expired outbox or inbox records.");
                        break;
                    }
                }
            }
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
    // A commit made before LISTEN took effect (the relay just started, or the listening
    // connection was re-established) notified nobody: one read now finds it, instead of
    // the poll much later.
    work.notify_one();
    loop {
        if let Err(error) = listener.recv().await {
            return error;
        }
        work.notify_one();
    }
}
