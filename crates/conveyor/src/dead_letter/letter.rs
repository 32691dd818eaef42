//! One dead letter as an operator sees it: the reason headers, the event's ids, the body.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::types::DeliveryTag;

use super::fingerprint::{self, Fingerprint};
use crate::envelope::Envelope;
use crate::headers;

/// A message held from a dead-letter queue, not yet acknowledged.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub(crate) delivery_tag: DeliveryTag,
    /// The event id (the envelope's, else the AMQP `message_id`).
    pub id: Option<String>,
    /// The event type (the envelope's, else the AMQP `type`).
    pub event_type: Option<String>,
    /// The correlation id (the envelope's, else the AMQP `correlation_id`).
    pub correlation_id: Option<String>,
    /// The service whose consumer gave up on it.
    pub service: Option<String>,
    /// Why it was dead-lettered: one of [`crate::DeadLetterKind`]'s names.
    pub error_kind: Option<String>,
    /// The error of the last failed attempt, as the consumer recorded it.
    pub error: Option<String>,
    /// Failed handling attempts when it was dead-lettered.
    pub attempts: Option<u32>,
    /// When the consumer dead-lettered it.
    pub failed_at: Option<DateTime<Utc>>,
    /// The exchange it was first delivered from, before any retry.
    pub original_exchange: Option<String>,
    /// The routing key it was first delivered with, before any retry.
    pub original_routing_key: Option<String>,
    /// How many times an operator replayed or moved it; 0 when never.
    pub replay_count: u32,
    /// The run that last replayed or moved it ([`crate::headers::REPLAY_RUN`]).
    pub replay_run: Option<String>,
    /// The message body, as delivered.
    pub body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

impl DeadLetter {
    pub(crate) fn from_delivery(delivery: Delivery) -> Self {
        let table = delivery.properties.headers().clone().unwrap_or_default();
        let text = |name: &str| headers::get_str(&table, name).map(str::to_owned);
        let property =
            |value: &Option<lapin::types::ShortString>| value.as_ref().map(|v| v.to_string());
        let properties = &delivery.properties;
        let (id, event_type, correlation_id) = match (
            property(properties.message_id()),
            property(properties.kind()),
            property(properties.correlation_id()),
        ) {
            // Conveyor's publishers mirror the envelope in these properties: no need to parse
            // the body, which matters when a million letters stream past.
            (Some(id), Some(kind), Some(correlation)) => (Some(id), Some(kind), Some(correlation)),
            (id, kind, correlation) => match Envelope::from_bytes(&delivery.data) {
                Ok(event) => (
                    Some(event.id.to_string()),
                    Some(event.event_type),
                    Some(event.correlationid.to_string()),
                ),
                Err(_) => (id, kind, correlation),
            },
        };
        Self {
            delivery_tag: delivery.delivery_tag,
            id,
            event_type,
            correlation_id,
            service: text(headers::SERVICE),
            error_kind: text(headers::ERROR_KIND),
            error: text(headers::ERROR),
            attempts: headers::get_u32(&table, headers::ATTEMPTS),
            failed_at: text(headers::FAILED_AT)
                .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
                .map(|at| at.with_timezone(&Utc)),
            original_exchange: text(headers::ORIGINAL_EXCHANGE),
            original_routing_key: text(headers::ORIGINAL_ROUTING_KEY),
            replay_count: headers::get_u32(&table, headers::REPLAY_COUNT).unwrap_or(0),
            replay_run: text(headers::REPLAY_RUN),
            body: delivery.data,
            properties: delivery.properties,
        }
    }

    /// Its failure fingerprint: letters that failed the same way share one.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        fingerprint::of(
            self.error_kind.as_deref(),
            self.event_type.as_deref(),
            self.error.as_deref(),
        )
    }

    /// The body as indented JSON when it is JSON, else as (lossy) text.
    pub fn body_pretty(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }

    /// Everything an operator or script needs, as JSON; `raw` keeps the body as text.
    pub fn to_json(&self, raw: bool) -> serde_json::Value {
        let body = if raw {
            serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned())
        } else {
            serde_json::from_slice(&self.body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&self.body).into_owned())
            })
        };
        serde_json::json!({
            "id": self.id, "type": self.event_type, "correlation_id": self.correlation_id,
            "service": self.service, "error_kind": self.error_kind, "error": self.error,
            "attempts": self.attempts, "failed_at": self.failed_at,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "replay_count": self.replay_count, "fingerprint": self.fingerprint().id,
            "body": body,
        })
    }

    /// The properties a replayed or moved copy carries: the originals, the failure headers
    /// dropped (the consumer's attempts start afresh), the replay count raised by one, the
    /// run that sent it, and who published the event first as far as the broker vouches for
    /// it (`relays`: the users whose copies name the original publisher; see
    /// `crate::source`). The copy's own `user_id` is the operator's, set on sending.
    pub(crate) fn forwarded_properties(&self, run: &str, relays: &[String]) -> BasicProperties {
        let mut table = self.properties.headers().clone().unwrap_or_default();
        let mut kept = lapin::types::FieldTable::default();
        for (key, value) in table.inner() {
            let dropped = [
                headers::ERROR,
                headers::ERROR_KIND,
                headers::ATTEMPTS,
                headers::FAILED_AT,
                headers::SERVICE,
                headers::REPLAY_COUNT,
                headers::PUBLISHER,
            ]
            .contains(&key.as_str());
            if !dropped {
                kept.insert(key.clone(), value.clone());
            }
        }
        table = kept;
        headers::set_u32(&mut table, headers::REPLAY_COUNT, self.replay_count + 1);
        headers::set_str(&mut table, headers::REPLAY_RUN, run);
        if let Some(publisher) = crate::source::origin(&self.properties, relays) {
            headers::set_str(&mut table, headers::PUBLISHER, &publisher);
        }
        let original = self.properties.headers().clone().unwrap_or_default();
        let replay =
            crate::trace_context::replay_trace(&original, self.id.as_deref().unwrap_or("-"));
        if !replay.is_empty() {
            table = headers::without(&table, headers::TRACESTATE);
            for (key, value) in &replay {
                headers::set_str(&mut table, key, value);
            }
        }
        self.properties
            .clone()
            .with_headers(table)
            .with_delivery_mode(2)
    }
}
