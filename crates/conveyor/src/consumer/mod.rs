//! The consumer runtime: typed handlers registered by event type, manual acks, bounded
//! prefetch, batches handled in one transaction with the inbox, retries through delay
//! tiers, dead letters with the reason, and its own reconnection.

pub(crate) mod batch;
mod db_error;
mod delivery;
mod handler;
mod key_lock;
mod outcome;
mod session_error;
mod settle;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{PgPool, Postgres};

pub use db_error::is_refused_data_code;
pub use handler::{EventHandler, EventMeta, HandlerContext, HandlerError};
pub use key_lock::key_lock_id;
pub use outcome::DeadLetterKind;
pub(crate) use outcome::Outcome;

use crate::amqp::AmqpConfig;
use crate::backoff::Backoff;
use crate::contract::Contract;
use crate::event::Event;
use crate::outbox::Outbox;
use crate::shutdown::Shutdown;
use crate::source::SourceRule;
use crate::store;
use crate::topology::{Names, ServiceTopology, Topology};
use handler::DynHandler;

/// How a consumer takes work from the broker.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Channels consuming in parallel, each handling its own batches (and holding one
    /// database connection while it does). Events that share a key never run at once,
    /// whatever the number.
    pub workers: usize,
    /// Unacknowledged deliveries the broker may send each channel.
    pub prefetch: u16,
    /// Deliveries handled in one database transaction at most.
    pub batch_size: usize,
    /// The largest body handled; a larger one is dead-lettered as `malformed` before it is
    /// parsed. With `prefetch` and `workers` it bounds the memory deliveries can take.
    pub max_body_bytes: usize,
    /// Delays before the first, second, … retry of a transient failure.
    pub retry_tiers: Vec<Duration>,
    /// The longest a batch waits for a lock (an event key's, or a row a handler locks)
    /// that another transaction holds. Past it, a batch's events whose key is busy are
    /// retried later (after the first retry tier, without counting as a failed attempt)
    /// and the rest proceed. Waiting behind busy batches on a shared key is normal, so keep
    /// it well above a batch's duration.
    pub lock_timeout: Duration,
    /// The longest the broker may take to confirm a retry or dead-letter copy. Past it (a
    /// memory or disk alarm blocks publishers) the session is reset and the batch, never
    /// acknowledged, is delivered again; acknowledgements of other batches go on meanwhile,
    /// because copies are published on a connection of their own.
    pub publish_timeout: Duration,
    /// How long a handling transaction may sit idle (a handler awaiting something other
    /// than the database) before Postgres ends it, releasing its locks: a hung handler
    /// cannot hold its keys for ever.
    pub idle_transaction_timeout: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            // Two channels let one batch's commit overlap the next batch's handling (1.3x one
            // channel in `conveyor bench runtime`); where Postgres is the limit, as in the
            // demo on two cores, one does a little more (530 against 470 orders/s).
            workers: 2,
            prefetch: 200,
            batch_size: 100,
            max_body_bytes: 256 * 1024,
            retry_tiers: vec![
                Duration::from_secs(1),
                Duration::from_secs(10),
                Duration::from_secs(60),
            ],
            lock_timeout: Duration::from_secs(20),
            publish_timeout: Duration::from_secs(30),
            idle_transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// A consumer was set up wrongly; reported before it touches the broker.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerSetupError {
    /// Two handlers were registered for the same event type.
    #[error("service {service} registers two handlers for {event_type}: keep one")]
    DuplicateHandler {
        /// The service being built.
        service: String,
        /// The event type registered twice (the first one found).
        event_type: String,
    },
    /// No handler was registered at all.
    #[error("service {service} has no handlers: register at least one before running")]
    NoHandlers {
        /// The service being built.
        service: String,
    },
    /// The named [`ConsumerOptions`] field is 0, or `retry_tiers` is empty.
    #[error("consumer option {0} must be at least 1 (retry_tiers: at least one delay)")]
    ZeroOption(&'static str),
}

/// Counts of what the consumer did, shared with whoever holds a clone.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Whether a broker session is up right now (for readiness checks).
    pub connected: AtomicBool,
    /// Deliveries whose handler ran and committed.
    pub handled: AtomicU64,
    /// Deliveries skipped because the inbox already had their event id.
    pub duplicates: AtomicU64,
    /// Deliveries sent to a retry queue.
    pub retried: AtomicU64,
    /// Deliveries sent to the dead letters.
    pub dead_lettered: AtomicU64,
}

impl ConsumerStats {
    /// Whether a broker session is up right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Deliveries handled so far.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Duplicate deliveries skipped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Deliveries sent to a retry queue so far.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Deliveries dead-lettered so far.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// What workers share: the service's handlers and where failures go.
#[derive(Clone)]
pub(crate) struct Registry {
    service: String,
    names: Names,
    handlers: HashMap<String, Arc<dyn DynHandler>>,
    retry_tiers: Vec<Duration>,
    outbox: Outbox,
    contract: Option<Arc<dyn Contract>>,
    stats: Arc<ConsumerStats>,
    lock_timeout: Duration,
    max_body_bytes: usize,
    /// Who may send this service what; decided by the user it connects as (see `run`).
    sources: SourceRule,
    /// `BEGIN` plus the lock timeout, sent as one round trip.
    begin: Arc<str>,
}

impl Registry {
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    pub(crate) fn handles(&self, event_type: &str) -> bool {
        self.handlers.contains_key(event_type)
    }

    /// Starts a handling transaction whose lock waits end after `lock_timeout`.
    async fn begin(
        &self,
        pool: &PgPool,
    ) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin_with(sqlx::AssertSqlSafe(Arc::clone(&self.begin)))
            .await
            .map_err(|error| match error {
                // Starting a transaction fails only when no connection can be had: the
                // server refuses connections (restarting, failing over, the database closed
                // to connections, credentials being rotated), whatever its SQLSTATE says.
                // That is the database being away, never the batch's fault, so it is told
                // as an I/O failure and the batch is held.
                sqlx::Error::Database(_) => sqlx::Error::Io(std::io::Error::other(error)),
                other => other,
            })
    }
}

/// Collects handlers for one service.
pub struct ConsumerBuilder {
    service: String,
    names: Names,
    handlers: HashMap<String, Arc<dyn DynHandler>>,
    duplicate: Option<String>,
    options: ConsumerOptions,
    contract: Option<Arc<dyn Contract>>,
}

impl ConsumerBuilder {
    /// Checks every arriving event against `contract` (an event that breaks it is
    /// dead-lettered as `schema`), and every follow-up event before it enters the outbox.
    #[must_use]
    pub fn contract(mut self, contract: Arc<dyn Contract>) -> Self {
        self.contract = Some(contract);
        self
    }

    /// The exchange and queue names to use, instead of the unprefixed default.
    #[must_use]
    pub fn names(mut self, names: Names) -> Self {
        self.names = names;
        self
    }

    /// How the consumer takes work from the broker, instead of the default options.
    #[must_use]
    pub fn options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// Registers `handler` for its event type; the service's queue binds that type.
    #[must_use]
    pub fn handler<H: EventHandler>(mut self, handler: H) -> Self {
        let event_type = <H::Event as Event>::TYPE.to_owned();
        if self
            .handlers
            .insert(event_type.clone(), Arc::new(handler))
            .is_some()
        {
            self.duplicate.get_or_insert(event_type);
        }
        self
    }

    /// # Errors
    /// [`ConsumerSetupError`] for a duplicate handler, no handlers, or a zero option.
    pub fn build(self) -> Result<Consumer, ConsumerSetupError> {
        if let Some(event_type) = self.duplicate {
            return Err(ConsumerSetupError::DuplicateHandler {
                service: self.service,
                event_type,
            });
        }
        if self.handlers.is_empty() {
            return Err(ConsumerSetupError::NoHandlers {
                service: self.service,
            });
        }
        let options = self.options;
        for (name, value) in [
            ("workers", options.workers),
            ("prefetch", usize::from(options.prefetch)),
            ("batch_size", options.batch_size),
            ("max_body_bytes", options.max_body_bytes),
            ("retry_tiers", options.retry_tiers.len()),
        ] {
            if value == 0 {
                return Err(ConsumerSetupError::ZeroOption(name));
            }
        }
        let registry = Registry {
            service: self.service,
            names: self.names,
            handlers: self.handlers,
            retry_tiers: options.retry_tiers.clone(),
            outbox: match &self.contract {
                Some(contract) => Outbox::new().with_contract(Arc::clone(contract)),
                None => Outbox::new(),
            },
            contract: self.contract,
            stats: Arc::default(),
            lock_timeout: options.lock_timeout,
            max_body_bytes: options.max_body_bytes,
            sources: SourceRule::Shared,
            begin: begin_statement(options.lock_timeout, options.idle_transaction_timeout),
        };
        Ok(Consumer {
            registry: Arc::new(registry),
            options,
        })
    }
}

/// A service's consumer, ready to run.
pub struct Consumer {
    registry: Arc<Registry>,
    options: ConsumerOptions,
}

impl Consumer {
    /// Starts collecting the handlers of `service`, with default names and options.
    pub fn builder(service: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            service: service.into(),
            names: Names::default(),
            handlers: HashMap::new(),
            duplicate: None,
            options: ConsumerOptions::default(),
            contract: None,
        }
    }

    /// The queue, bindings and retry tiers that follow from the registered handlers.
    pub fn service_topology(&self) -> ServiceTopology {
        ServiceTopology {
            service: self.registry.service.clone(),
            event_types: self
                .registry
                .handlers
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>(),
            retry_tiers: self.options.retry_tiers.clone(),
        }
    }

    /// What the consumer declares on connecting: the shared part plus its service's
    /// queue, bindings, retry tiers and dead-letter queue.
    pub fn topology(&self) -> Topology {
        Topology::for_service(&self.registry.names, &self.service_topology())
    }

    /// Sets the channels consuming in parallel (at least 1), as a deployment's setting
    /// overrides what the service chose.
    pub fn set_workers(&mut self, workers: usize) {
        self.options.workers = workers.max(1);
    }

    /// The consumer's counts, which keep updating while it runs.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.registry.stats)
    }

    /// Consumes until `shutdown` fires: then stops taking deliveries, finishes the batches
    /// in hand, acknowledges them and closes its channels. A lost broker or database
    /// connection is re-established with backoff; deliveries not yet acknowledged return to
    /// the queue, and the inbox skips those already handled.
    pub async fn run(mut self, amqp: AmqpConfig, pool: PgPool, shutdown: Shutdown) {
        self.take_sources_from(&amqp);
        let mut backoff = Backoff::default();
        while let Err(error) = store::install(&pool).await {
            tracing::warn!(%error, "Cannot install the inbox and outbox tables; retrying.");
            if shutdown.sleep(backoff.next_delay()).await {
                return;
            }
        }
        backoff.reset();
        while !shutdown.is_fired() {
            match worker::run_session(&self, &amqp, &pool, &shutdown).await {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(service = %self.registry.service, %error, "Consumer lost its broker session; reconnecting.");
                    if shutdown.sleep(backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }
}

impl Consumer {
    /// The handlers and settings its workers share (for `crate::testing`).
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Where the service connects as its own broker user, events are taken only from the
    /// users of their publishers; on a shared account the broker cannot tell who sent what.
    fn take_sources_from(&mut self, amqp: &AmqpConfig) {
        let registry = Arc::make_mut(&mut self.registry);
        let user = amqp.user();
        registry.sources = SourceRule::for_connection(&registry.names, &registry.service, &user);
        match registry.sources {
            SourceRule::OwnUsers { .. } => tracing::info!(
                service = %registry.service, %user,
                "Events are taken only from the broker users of the services that publish them."
            ),
            SourceRule::Shared => tracing::info!(
                service = %registry.service, %user,
                expected = %registry.names.broker_user(&registry.service),
                "Connected with a shared broker account: events are not checked for their \
                 publisher (give each service its own user: conveyor topology users)."
            ),
        }
    }
}

/// `BEGIN` with the transaction's time limits (whole milliseconds; 0 would mean "no limit"
/// to Postgres, so at least 1).
fn begin_statement(lock_timeout: Duration, idle_timeout: Duration) -> Arc<str> {
    let millis = |limit: Duration| limit.as_millis().clamp(1, i32::MAX as u128);
    format!(
        "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL idle_in_transaction_session_timeout = {}",
        millis(lock_timeout),
        millis(idle_timeout)
    )
    .into()
}
