//! Declaring the topology on a broker, idempotently, and upgrading queues that an older
//! release declared with other arguments (RabbitMQ refuses to redeclare a queue with
//! different ones, and would otherwise stop every service from starting).

use std::collections::BTreeSet;

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use super::{QueueSpec, Topology, Upgrade, field_table};

const CLOSE_OK: u16 = 200;

/// A declaration the broker refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "the broker refused to declare {what}: {source}. Check the connection's user may configure it, and that broker-config/ matches the code."
)]
pub struct TopologyError {
    what: String,
    #[source]
    source: lapin::Error,
}

fn refused(what: impl Into<String>, source: lapin::Error) -> TopologyError {
    TopologyError {
        what: what.into(),
        source,
    }
}

impl Topology {
    /// Declares everything on `connection`; safe to repeat. A queue an older release
    /// declared with other arguments is replaced once it is empty where no message can be
    /// lost meanwhile (retry tiers), and otherwise kept as it is with a warning, so a
    /// service never fails to start over it.
    ///
    /// A user with least privilege (`conveyor topology users`) may configure only its own
    /// queues: an exchange or queue it may not declare is then only checked to exist (the
    /// operator's `conveyor topology apply` made it), and bindings to such a queue are left
    /// to the operator too.
    ///
    /// # Errors
    /// [`TopologyError`] naming the exchange, queue or binding the broker refused.
    pub async fn declare(&self, connection: &Connection) -> Result<(), TopologyError> {
        let mut channel = open(connection).await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in &self.exchanges {
            let declared = channel
                .exchange_declare(
                    exchange.name.as_str().into(),
                    exchange.kind.to_lapin(),
                    durable,
                    field_table(&exchange.arguments),
                )
                .await;
            let what = || format!("exchange {}", exchange.name);
            match declared {
                Ok(()) => {}
                Err(source) if is_access_refused(&source) => {
                    channel = open(connection).await?;
                    exchange_exists(&channel, &exchange.name)
                        .await
                        .map_err(|source| missing(what(), source))?;
                }
                Err(source) => return Err(refused(what(), source)),
            }
        }
        let mut not_ours = BTreeSet::new();
        for queue in &self.queues {
            match declare_queue(&channel, queue).await {
                Ok(()) => {}
                Err(source) if is_precondition_failed(&source) => {
                    // The refusal closed the channel.
                    channel = upgrade(connection, queue).await?;
                }
                Err(source) if is_access_refused(&source) => {
                    channel = open(connection).await?;
                    crate::amqp::declare_passive(&channel, &queue.name)
                        .await
                        .map_err(|source| missing(format!("queue {}", queue.name), source))?;
                    not_ours.insert(queue.name.as_str());
                }
                Err(source) => return Err(refused(format!("queue {}", queue.name), source)),
            }
        }
        for binding in &self.bindings {
            if not_ours.contains(binding.queue.as_str()) {
                continue;
            }
            channel
                .queue_bind(
                    binding.queue.as_str().into(),
                    binding.exchange.as_str().into(),
                    binding.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|source| {
                    let what = format!(
                        "binding {} -> {} ({})",
                        binding.exchange, binding.queue, binding.routing_key
                    );
                    refused(what, source)
                })?;
        }
        let _ = channel.close(CLOSE_OK, "topology declared".into()).await;
        Ok(())
    }
}

async fn exchange_exists(channel: &Channel, name: &str) -> Result<(), lapin::Error> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            name.into(),
            lapin::ExchangeKind::Direct,
            passive,
            FieldTable::default(),
        )
        .await
}

/// Something this user may not declare is not there either.
fn missing(what: String, source: lapin::Error) -> TopologyError {
    refused(
        format!(
            "{what} (this broker user may not create it, and it does not exist: run \
             `conveyor topology apply` as the operator first)"
        ),
        source,
    )
}

async fn open(connection: &Connection) -> Result<Channel, TopologyError> {
    connection
        .create_channel()
        .await
        .map_err(|source| refused("a channel", source))
}

async fn declare_queue(channel: &Channel, queue: &QueueSpec) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.name.as_str().into(),
            QueueDeclareOptions::durable(),
            field_table(&queue.arguments),
        )
        .await
        .map(drop)
}

/// `queue` exists with other arguments: replaces it if that is safe and it is empty,
/// keeps it otherwise. Returns an open channel for what follows.
async fn upgrade(connection: &Connection, queue: &QueueSpec) -> Result<Channel, TopologyError> {
    let mut channel = open(connection).await?;
    if queue.upgrade == Upgrade::ReplaceWhenEmpty {
        let if_empty = QueueDeleteOptions {
            if_empty: true,
            ..QueueDeleteOptions::default()
        };
        match channel
            .queue_delete(queue.name.as_str().into(), if_empty)
            .await
        {
            Ok(_) => {
                declare_queue(&channel, queue)
                    .await
                    .map_err(|source| refused(format!("queue {}", queue.name), source))?;
                tracing::info!(queue = %queue.name, "Queue declared anew with this release's arguments.");
                return Ok(channel);
            }
            // Not empty yet: the next declaration (every reconnect) tries again.
            Err(error) if is_precondition_failed(&error) => channel = open(connection).await?,
            Err(source) => return Err(refused(format!("queue {}", queue.name), source)),
        }
    }
    crate::amqp::declare_passive(&channel, &queue.name)
        .await
        .map_err(|source| refused(format!("queue {}", queue.name), source))?;
    tracing::warn!(
        queue = %queue.name,
        "Queue exists with other arguments than this release declares; it keeps its old ones. \
         To apply the new ones, move its messages away (conveyor dlq move), delete it and run \
         `conveyor topology apply`."
    );
    Ok(channel)
}

fn is_access_refused(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)))
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
}
