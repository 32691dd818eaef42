//! Edit and retry: one dead letter's data changed by an operator and sent back to its
//! service as a new event, exactly once.
//!
//! The copy keeps the letter's type, source, subject and flow, and gets a new event id with
//! the original as its cause. The id is derived from the original's id and the new data, so
//! an edit repeated after a crash (the copy confirmed, the original not yet acknowledged)
//! sends the same event again, which the service's inbox drops: one effect, whatever
//! happens. The copy is confirmed by the broker before the original is acknowledged, as a
//! replay's are.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::audit::{AuditRecord, AuditStatus};
use super::letter::DeadLetter;
use super::{DeadLetterError, DeadLetterQueue};
use crate::amqp::AmqpConfig;
use crate::envelope::Envelope;
use crate::publisher::OutgoingMessage;
use crate::topology::Names;

/// Why an edit was not sent.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The queue could not be read or the copy not sent.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// No letter with this id is in the queue (replayed, moved or purged meanwhile?).
    #[error(
        "no dead letter {id} is in {queue}: it may have been replayed, moved or purged meanwhile"
    )]
    NotFound {
        /// The id asked for.
        id: String,
        /// The queue read.
        queue: String,
    },
    /// The letter is not an event, so it has no data to edit.
    #[error(
        "dead letter {id} is not a CloudEvents envelope ({reason}), so it has no data to edit: move or purge it instead"
    )]
    NotAnEvent {
        /// The letter's id.
        id: String,
        /// Why its body does not read as an event.
        reason: String,
    },
    /// The check the caller gave refused the edited event.
    #[error("the edited event is refused: {0}")]
    Refused(String),
    /// The copy was sent (the broker confirmed it), but the original could not be removed:
    /// it is still in the queue. The same edit sent again is dropped by the service's inbox.
    #[error(
        "the edited copy {copy_id} was sent, but the dead letter could not be removed ({source}): it is still in the queue; send the same edit again to remove it (the service's inbox drops the repeat), never another edit"
    )]
    SentButKept {
        /// The copy that was sent.
        copy_id: Uuid,
        /// Why the original stayed.
        source: DeadLetterError,
    },
}

/// What an edit sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EditReport {
    /// The original letter's event id.
    pub original_id: String,
    /// The copy's event id.
    pub copy_id: Uuid,
    /// The change, as a JSON Patch (RFC 6902) of the event's data.
    pub patch: Value,
    /// The event type (kept).
    pub event_type: String,
}

impl AuditRecord {
    /// Turns an edit's start record into its end record: finished with the change and the
    /// copy's id, or failed with the reason.
    pub fn end_edit(&mut self, sent: &Result<EditReport, EditError>) {
        self.at = chrono::Utc::now();
        match sent {
            Ok(report) => {
                self.status = AuditStatus::Finished;
                self.done = Some(1);
                self.patch = Some(report.patch.clone());
                self.copy_id = Some(report.copy_id);
            }
            Err(error) => {
                self.status = AuditStatus::Failed;
                self.done = Some(0);
                self.error = Some(error.to_string());
                if let EditError::SentButKept { copy_id, .. } = error {
                    self.done = Some(1);
                    self.copy_id = Some(*copy_id);
                }
            }
        }
    }
}

/// The letter `id` of `service`'s dead letters, looked at and given back; `None` when it is
/// not in the queue.
///
/// # Errors
/// As [`DeadLetterQueue::open`] and [`DeadLetterQueue::scan`].
pub async fn find(
    amqp: &AmqpConfig,
    names: &Names,
    service: &str,
    id: &str,
) -> Result<Option<DeadLetter>, DeadLetterError> {
    let queue = DeadLetterQueue::open(amqp, names, service).await?;
    let mut found = None;
    queue
        .scan_while(|letter| {
            if letter.id.as_deref() == Some(id) {
                found = Some(letter);
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await?;
    Ok(found)
}

/// The event a dead letter carries.
///
/// # Errors
/// [`EditError::NotAnEvent`] when its body is not an envelope.
pub fn event_of(letter: &DeadLetter) -> Result<Envelope, EditError> {
    Envelope::from_bytes(&letter.body).map_err(|error| EditError::NotAnEvent {
        id: letter.id.clone().unwrap_or_else(|| "-".to_owned()),
        reason: error.to_string(),
    })
}

/// The edited copy of `original` with `data`: a new id derived from the original's and the
/// data, the original as its cause, everything else kept.
pub fn edited_copy(original: &Envelope, data: Value) -> Envelope {
    let mut copy = original.clone();
    copy.id = copy_id(original.id, &data);
    copy.causationid = Some(original.id);
    copy.data = data;
    copy
}

/// A UUID (version 8) from a digest of the original's id and the new data: the same edit
/// always gets the same id.
fn copy_id(original: Uuid, data: &Value) -> Uuid {
    let digest = Sha256::new()
        .chain_update(original.as_bytes())
        .chain_update(data.to_string().as_bytes())
        .finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Sends the letter `id` of `service` back to the service with `data` in place of its
/// data, after `check` accepts the edited event; then acknowledges the original.
///
/// # Errors
/// [`EditError`]: nothing was sent unless the copy's confirm came and only the original's
/// acknowledgement failed (then the original stays and the same edit sent again is dropped
/// by the inbox).
pub async fn edit_and_retry(
    amqp: &AmqpConfig,
    names: &Names,
    service: &str,
    id: &str,
    data: Value,
    run_id: Uuid,
    check: impl Fn(&Envelope) -> Result<(), String>,
) -> Result<EditReport, EditError> {
    let queue = DeadLetterQueue::open(amqp, names, service).await?;
    let outcome = send_edited(&queue, id, data, run_id, check).await;
    queue.release().await;
    outcome
}

/// Finds the letter in the held queue, sends its edited copy and acknowledges it.
async fn send_edited(
    queue: &DeadLetterQueue,
    id: &str,
    data: Value,
    run_id: Uuid,
    check: impl Fn(&Envelope) -> Result<(), String>,
) -> Result<EditReport, EditError> {
    let mut reader = queue.held.reader();
    let letter = loop {
        let Some(delivery) = reader.next().await.map_err(DeadLetterError::from)? else {
            return Err(EditError::NotFound {
                id: id.to_owned(),
                queue: queue.queue().to_owned(),
            });
        };
        let letter = DeadLetter::from_delivery(delivery);
        if letter.id.as_deref() == Some(id) {
            break letter;
        }
    };
    let original = event_of(&letter)?;
    let copy = edited_copy(&original, data);
    check(&copy).map_err(EditError::Refused)?;
    let relays = crate::source::relays(&queue.names, &queue.service);
    let properties = letter
        .forwarded_properties(&run_id.to_string(), &relays)
        .with_message_id(copy.id.to_string().into());
    let message = OutgoingMessage {
        exchange: String::new(),
        routing_key: queue.names.service_queue(&queue.service),
        body: copy.to_bytes(),
        properties,
    };
    queue
        .held
        .confirms
        .publish_all(&[message])
        .await
        .map_err(DeadLetterError::from)?;
    reader
        .ack(letter.delivery_tag)
        .await
        .map_err(|error| EditError::SentButKept {
            copy_id: copy.id,
            source: DeadLetterError::from(error),
        })?;
    Ok(EditReport {
        original_id: id.to_owned(),
        copy_id: copy.id,
        patch: json_patch(&original.data, &copy.data),
        event_type: copy.event_type,
    })
}

/// The JSON Patch (RFC 6902) that turns `old` into `new`: objects compared key by key, any
/// other change a `replace` of the whole value.
pub fn json_patch(old: &Value, new: &Value) -> Value {
    let mut operations = Vec::new();
    diff("", old, new, &mut operations);
    Value::Array(operations)
}

fn diff(path: &str, old: &Value, new: &Value, operations: &mut Vec<Value>) {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => diff_objects(path, old, new, operations),
        _ if old == new => {}
        _ => operations.push(json!({ "op": "replace", "path": path, "value": new })),
    }
}

fn diff_objects(
    path: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    operations: &mut Vec<Value>,
) {
    for (key, old_value) in old {
        let at = format!("{path}/{}", pointer_token(key));
        match new.get(key) {
            Some(new_value) => diff(&at, old_value, new_value, operations),
            None => operations.push(json!({ "op": "remove", "path": at })),
        }
    }
    for (key, new_value) in new {
        if !old.contains_key(key) {
            let at = format!("{path}/{}", pointer_token(key));
            operations.push(json!({ "op": "add", "path": at, "value": new_value }));
        }
    }
}

/// A key as a JSON Pointer token (RFC 6901): `~` and `/` escaped.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_names_each_change_by_pointer() {
        let old = json!({ "amount": 700, "note": "x", "a/b": { "c": 1 }, "gone": true });
        let new = json!({ "amount": 500, "note": "x", "a/b": { "c": 2 }, "new": [1] });
        assert_eq!(
            json_patch(&old, &new),
            json!([
                { "op": "replace", "path": "/a~1b/c", "value": 2 },
                { "op": "replace", "path": "/amount", "value": 500 },
                { "op": "remove", "path": "/gone" },
                { "op": "add", "path": "/new", "value": [1] },
            ])
        );
        assert_eq!(json_patch(&old, &old), json!([]));
    }

    #[test]
    fn the_same_edit_gets_the_same_new_id_and_another_edit_another() {
        let original = Envelope::new("orders", "order.created", json!({ "n": 1 }));
        let once = edited_copy(&original, json!({ "n": 2 }));
        let again = edited_copy(&original, json!({ "n": 2 }));
        let other = edited_copy(&original, json!({ "n": 3 }));
        assert_eq!(once.id, again.id);
        assert_ne!(once.id, other.id);
        assert_ne!(once.id, original.id);
        assert_eq!(once.causationid, Some(original.id));
        assert_eq!(
            (
                once.event_type.as_str(),
                once.source.as_str(),
                &once.subject
            ),
            (
                original.event_type.as_str(),
                original.source.as_str(),
                &original.subject
            )
        );
        assert_eq!(once.correlationid, original.correlationid);
    }
}
