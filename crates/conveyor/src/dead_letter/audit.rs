//! The operators' audit log: one record per replay, move or purge (when it started and how it
//! finished), kept on the broker beside the dead letters in the quorum queue
//! `conveyor.dlq-audit`, so every operator's machine sees the same log.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use serde_json::Value;

use super::DeadLetterError;
use super::held_queue::{HeldQueue, queue_exists};
use crate::amqp::AmqpConfig;
use crate::publisher::{ConfirmChannel, OutgoingMessage};
use crate::topology::Names;

pub fn audit_queue(names: &Names) -> String {
    let events = names.events_exchange();
    // Same prefix as the events exchange: `conveyor.events` → `conveyor.dlq-audit`.
    events.replace("conveyor.events", "conveyor.dlq-audit")
}

async fn declare(connection: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

/// Appends `record`, waiting for the broker's confirm.
///
/// # Errors
/// [`DeadLetterError`] when the broker cannot be reached or refuses the record.
pub async fn append(
    amqp: &AmqpConfig,
    names: &Names,
    record: &Value,
) -> Result<(), DeadLetterError> {
    let connection = amqp.connect().await?;
    let queue = audit_queue(names);
    declare(&connection, &queue).await?;
    let channel = ConfirmChannel::open(&connection).await?;
    let message = OutgoingMessage {
        exchange: String::new(),
        routing_key: queue,
        body: serde_json::to_vec(record).unwrap_or_default(),
        properties: BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2),
    };
    channel.publish_all(&[message]).await?;
    let _ = connection.close(200, "audit written".into()).await;
    Ok(())
}

/// Every record, oldest first.
///
/// # Errors
/// [`DeadLetterError`] when the broker cannot be reached.
pub async fn read(amqp: &AmqpConfig, names: &Names) -> Result<Vec<Value>, DeadLetterError> {
    let connection = amqp.connect().await?;
    let queue = audit_queue(names);
    if !queue_exists(&connection, &queue).await? {
        return Ok(Vec::new());
    }
    let held = HeldQueue::open(&connection, &queue).await?;
    let records = held
        .hold_all()
        .await?
        .into_iter()
        .map(|delivery| {
            serde_json::from_slice(&delivery.data).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&delivery.data).into_owned())
            })
        })
        .collect();
    held.release().await;
    let _ = connection.close(200, "audit read".into()).await;
    Ok(records)
}
