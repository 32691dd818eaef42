//! Handlers tested without a broker: a service's real consumer, its real database, no
//! RabbitMQ.
//!
//! A [`Harness`] hands envelopes to a [`Consumer`](crate::Consumer)'s handlers through the
//! very code the consumer runs for a batch of deliveries from the broker: the contract and source checks,
//! the inbox, the key locks, one transaction with the outbox, the savepoint fallback when a
//! handler fails. It steps one batch per call (no sleeps, no background tasks), then reads
//! what the handlers emitted from the outbox as typed events. A [`Network`] joins the
//! harnesses of several services, each on its own database, and carries every emitted event
//! to the services that handle its type until none is left: a whole flow in one process.
//!
//! ```no_run
//! # async fn example(consumer: conveyor::Consumer, pool: sqlx::PgPool) -> anyhow::Result<()> {
//! use conveyor::testing::Harness;
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct OrderPlaced { order_id: u64 }
//! # impl conveyor::Event for OrderPlaced { const TYPE: &'static str = "order.placed"; }
//! # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct StockReserved { order_id: u64 }
//! # impl conveyor::Event for StockReserved { const TYPE: &'static str = "stock.reserved"; }
//! let mut harness = Harness::new(consumer, pool).await?;
//! let placed = harness.envelope("orders", "42", &OrderPlaced { order_id: 42 });
//! let emitted = harness.deliver(&placed).await?.handled()?;
//! assert_eq!(emitted.one::<StockReserved>()?.order_id, 42);
//! // The same event again changes nothing: the inbox knows it.
//! assert!(harness.deliver(&placed).await?.is_duplicate());
//! # Ok(()) }
//! ```
//!
//! What it does not model, and where the real broker is needed instead (the testkit's
//! `TestEnv` gives each test a vhost of its own): the retry tiers' delays (a
//! [`Handling::Retry`] is handed back at once by [`Harness::retry`]), prefetch and the
//! number of workers, several processes competing for one queue, the broker's own
//! dead-lettering (quorum delivery limits), publisher confirms and the relay, and the
//! source check by broker user (deliveries here carry no `user_id`, as on a shared account).
//!
//! # Layout
//!
//! - `harness`: one service's consumer on its database, stepped one batch at a time.
//! - `handling`: what became of a delivery, and the events its handler emitted.
//! - `network`: several harnesses passing each other's events, for a whole flow.

mod handling;
mod harness;
mod network;

pub use handling::{Emitted, Handling, HarnessError, Retry};
pub use harness::Harness;
pub use network::{Network, Step, Trail};
