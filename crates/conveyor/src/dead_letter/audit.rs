//! The operators' audit log: one record when a replay, move or purge starts and one when it
//! ends, kept on the broker beside the dead letters in the quorum queue `conveyor.dlq-audit`
//! (declared with the rest of the topology), so every operator's machine sees the same log.
//!
//! A record holds counts and a digest of the ids, never the ids: it stays small whatever the
//! transfer's size. It is a convenience, not tamper-proof: anyone with rights on the broker
//! can change the queue, and the operator's name is what their machine says it is.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use serde::{Deserialize, Serialize};

use super::DeadLetterError;
use super::held_queue::{HeldQueue, queue_exists};
use crate::amqp::AmqpConfig;
use crate::publisher::{ConfirmChannel, OutgoingMessage};
use crate::topology::Names;

/// How a run stood when its record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    /// The run is about to start; nothing has moved yet.
    Started,
    /// The run ended without an error.
    Finished,
    /// The run stopped on an error, given in `error`.
    Failed,
    /// An operator paused the run (a gentle replay); nothing moves until it resumes.
    Paused,
    /// An operator resumed a paused run.
    Resumed,
}

impl AuditStatus {
    /// Whether the run has ended: a start or a pause with no end after it is a run that a
    /// console resumes (or keeps paused) when it starts.
    pub fn is_end(self) -> bool {
        matches!(self, Self::Finished | Self::Failed)
    }
}

/// One record of the audit log. Fields other than the first few are absent from records
/// written before they existed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the record was written.
    pub at: DateTime<Utc>,
    /// How the run stood then.
    pub status: AuditStatus,
    /// `replay`, `move` or `purge`.
    pub command: String,
    /// The service whose dead letters the run acts on.
    pub service: String,
    /// The queue the letters go to; the CLI writes `(deleted)` for a purge.
    pub target: String,
    /// `user@host` as the operator's machine names them.
    pub operator: String,
    /// The conditions of the run's filter, as `Filter::to_json` gives them.
    #[serde(default)]
    pub filters: serde_json::Value,
    /// The run's id, also written on every copy it sends.
    #[serde(default)]
    pub run_id: Option<uuid::Uuid>,
    /// The rate asked for, in messages per second; `None` when unlimited.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// The most dead letters the run was to act on; `None` when unlimited.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Transferred so far (finished or failed records).
    #[serde(default)]
    pub done: Option<u64>,
    /// Letters this run sent that failed again and were left in place.
    #[serde(default)]
    pub came_back: Option<u64>,
    /// SHA-256 of the transferred ids, in order, one per line.
    #[serde(default)]
    pub ids_sha256: Option<String>,
    /// Time spent reading and transferring (finished or failed records).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Why the run stopped (failed records).
    #[serde(default)]
    pub error: Option<String>,
    /// `gentle` for a replay in growing batches that stops when the failure comes back;
    /// absent for a plain transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// How a finished gentle replay ended: drained, the failure came back, or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// An edit's change to the event's data, as a JSON Patch (RFC 6902).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
    /// The id of the edited copy an edit sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_id: Option<uuid::Uuid>,
}

impl AuditRecord {
    /// A record written now, of `command` on `service`'s dead letters towards `target`, by
    /// `operator`; every figure and detail unset.
    pub fn new(
        status: AuditStatus,
        command: &str,
        service: &str,
        target: String,
        operator: String,
    ) -> Self {
        Self {
            at: Utc::now(),
            status,
            command: command.to_owned(),
            service: service.to_owned(),
            target,
            operator,
            filters: serde_json::Value::Object(serde_json::Map::new()),
            run_id: None,
            rate_per_second: None,
            limit: None,
            done: None,
            came_back: None,
            ids_sha256: None,
            seconds: None,
            error: None,
            mode: None,
            outcome: None,
            patch: None,
            copy_id: None,
        }
    }
}

/// The newest records of the log, oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    /// The newest readable records, at most as many as asked for.
    pub records: Vec<AuditRecord>,
    /// Records in the log, readable or not.
    pub total: u64,
    /// Messages in the audit queue that are not records (written by something else).
    pub unreadable: u64,
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
    record: &AuditRecord,
) -> Result<(), DeadLetterError> {
    let connection = amqp.connect().await?;
    let queue = names.dead_letter_audit_queue();
    // Declared by the topology too; here as well, for a broker no service has started on.
    declare(&connection, &queue).await?;
    let channel = ConfirmChannel::open(&connection, &amqp.user()).await?;
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

/// The newest `newest` records, oldest first, read in bounded memory.
///
/// # Errors
/// [`DeadLetterError`] when the broker cannot be reached, or another reader holds the log.
pub async fn read(
    amqp: &AmqpConfig,
    names: &Names,
    newest: usize,
) -> Result<AuditLog, DeadLetterError> {
    let connection = amqp.connect().await?;
    let queue = names.dead_letter_audit_queue();
    if !queue_exists(&connection, &queue).await? {
        let _ = connection.close(200, "no audit log".into()).await;
        return Ok(AuditLog::default());
    }
    let held = HeldQueue::open(&connection, &amqp.user(), &queue).await?;
    let mut log = AuditLog::default();
    let mut kept = VecDeque::with_capacity(newest.min(1024));
    let outcome = held
        .scan(|delivery| {
            log.total += 1;
            match serde_json::from_slice::<AuditRecord>(&delivery.data) {
                Ok(record) => {
                    if kept.len() == newest {
                        kept.pop_front();
                    }
                    if newest > 0 {
                        kept.push_back(record);
                    }
                }
                Err(_) => log.unreadable += 1,
            }
            std::ops::ControlFlow::Continue(())
        })
        .await;
    held.release(&connection).await;
    let _ = connection.close(200, "audit read".into()).await;
    outcome?;
    log.records = kept.into();
    Ok(log)
}
