//! Conveyor's messaging runtime: reliable publish and consume over RabbitMQ, generic over
//! the events it carries (no domain types live here).
//!
//! # Start here
//!
//! An [`Event`] names a type of event and its data; an [`EventHandler`] handles one, inside
//! the transaction that also records it in the inbox; a [`Consumer`] runs a service's
//! handlers; an [`OutboxRelay`] publishes what they (and the service's own code, through
//! [`Outbox`]) emitted. [`testing::Harness`] tests handlers without a broker.
//!
//! ```no_run
//! use conveyor::{Consumer, Event, EventHandler, HandlerContext, HandlerError};
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct UserRegistered { user_id: uuid::Uuid, email: String }
//!
//! impl Event for UserRegistered {
//!     const TYPE: &'static str = "user.registered";
//! }
//!
//! /// Keeps a copy of each user's address.
//! struct CopyUser;
//!
//! impl EventHandler for CopyUser {
//!     type Event = UserRegistered;
//!
//!     async fn handle(&self, user: UserRegistered, ctx: &mut HandlerContext<'_>)
//!         -> Result<(), HandlerError> {
//!         sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING")
//!             .bind(user.user_id)
//!             .bind(&user.email)
//!             .execute(ctx.tx())
//!             .await?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), conveyor::ConsumerSetupError> {
//! // The name is the queue's and the inbox's key: renaming it handles every event again.
//! let consumer = Consumer::builder("mailer").handler(CopyUser).build()?;
//! # Ok(()) }
//! ```
//!
//! `examples/first-handler` in the repository is a whole service with its test; the book's
//! *Test a handler* (`docs/src/test-a-handler.md`) shows it.
//!
//! # Layout
//!
//! - `envelope`: the CloudEvents 1.0 envelope every message travels in.
//! - `event`: an event type as the runtime knows it: its name, version and data.
//! - `headers`: names of the AMQP headers Conveyor reads and writes.
//! - `trace_context`: W3C `traceparent` injected on publish, continued on consume.
//! - `contract`: the hook an event contract plugs into, checked on publish and on consume.
//! - `amqp`: the one place that opens broker connections.
//! - `topology`: the exchanges and queues, declared and exported from one description.
//! - `publisher`: publisher confirms with many messages in flight.
//! - `store`: the runtime's outbox and inbox tables.
//! - `outbox`: writing events inside the caller's transaction, to send now or when due.
//! - `relay`: publishing committed outbox rows, shared safely by several relays, and moving
//!   scheduled events to the outbox when due.
//! - `parked`: the rows the broker will never take, listed and sent again by operators.
//! - `scheduled`: what waits in a service's schedule, as operators see it.
//! - `consumer`: handlers, batches in one transaction with the inbox, per-key locks,
//!   retries, dead letters.
//! - `dead_letter`: the operators' reading, grouping, replay, move and purge of dead letters.
//! - `metrics`: the process's Prometheus metrics, rendered by each service's `/metrics`.
//! - `source`: who published a delivery (its broker-checked `user_id`) and whether they may.
//! - `shutdown`: the shutdown token and the SIGTERM/SIGINT future.
//! - `backoff`: delays between reconnection attempts.
//! - `testing`: a service's handlers tested on its database without a broker.

// Every public item is documented: the runtime is what teams build on.
#![warn(missing_docs)]

mod amqp;
mod backoff;
mod consumer;
mod contract;
pub mod dead_letter;
mod envelope;
mod event;
pub mod headers;
pub mod metrics;
mod outbox;
pub mod parked;
mod publisher;
mod relay;
pub mod scheduled;
pub mod shutdown;
pub mod source;
mod store;
pub mod testing;
mod topology;
mod trace_context;

pub use amqp::{
    AmqpConfig, ConnectError, DEFAULT_AMQP_URL, close_within, declare_passive, is_not_found,
    queue_depth, redact_url,
};
pub use backoff::Backoff;
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerOptions, ConsumerSetupError, ConsumerStats, DeadLetterKind,
    EventHandler, EventMeta, HandlerContext, HandlerError, is_refused_data_code, key_lock_id,
};
pub use contract::{Contract, ContractViolation};
pub use envelope::{CLOUDEVENTS_CONTENT_TYPE, Envelope, EnvelopeError};
pub use event::Event;
pub use outbox::{Outbox, OutboxError};
pub use publisher::{ConfirmChannel, OutgoingMessage, PublishError, Publisher};
pub use relay::{OutboxRelay, RelayError, RelayOptions};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use store::{OUTBOX_CHANNEL, install};
pub use topology::{
    BrokerUser, DELIVERY_LIMIT, Names, NamesError, ServiceTopology, TopicPermission, Topology,
    TopologyError, UNROUTED_MAX_AGE, UNROUTED_MAX_LENGTH,
};
pub use trace_context::{TraceHeaders, capture_current as capture_trace_context};
