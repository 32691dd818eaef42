//! The CloudEvents 1.0 envelope every Conveyor message travels in (structured JSON mode).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event::Event;

/// The content type of a message body in structured CloudEvents mode.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";
const SPEC_VERSION: &str = "1.0";

/// One domain event with its CloudEvents attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The CloudEvents spec version; only `1.0` is accepted.
    pub specversion: String,
    /// Unique per event (UUID v7, so ids sort by creation time); the inbox dedupes on it.
    pub id: Uuid,
    /// The emitting service, as `/services/<name>`.
    pub source: String,
    /// The event type, also the routing key (`order.created`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event was created.
    pub time: DateTime<Utc>,
    /// The media type of `data`: `application/json`.
    pub datacontenttype: String,
    /// The schema and version `data` follows (`events-schema/order.created/v1`); absent
    /// means version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// The aggregate the event is about (an order id, a sku).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The flow this event belongs to (the saga's id); equals `id` for the first event of a flow.
    pub correlationid: Uuid,
    /// The id of the event whose handling emitted this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<Uuid>,
    /// The event's payload.
    pub data: Value,
}

/// Why bytes could not be read as an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON, or lacks a required attribute.
    #[error("body is not a CloudEvents JSON envelope: {0}")]
    NotAnEnvelope(#[from] serde_json::Error),
    /// The envelope's `specversion`, given, is not `1.0`.
    #[error("unsupported CloudEvents specversion {0:?}: expected \"1.0\"")]
    SpecVersion(String),
    /// The event type is empty or only whitespace.
    #[error("event type is empty")]
    EmptyType,
}

impl Envelope {
    /// A new event that starts its own flow: its correlation id is its own id.
    pub fn new(service: &str, event_type: impl Into<String>, data: Value) -> Self {
        let id = Uuid::now_v7();
        let event_type = event_type.into();
        Self {
            specversion: SPEC_VERSION.to_owned(),
            id,
            source: format!("/services/{service}"),
            dataschema: Some(format!("events-schema/{event_type}/v1")),
            event_type,
            time: Utc::now(),
            datacontenttype: "application/json".to_owned(),
            subject: None,
            correlationid: id,
            causationid: None,
            data,
        }
    }

    /// A new event carrying `data`, typed: `type` and `dataschema` come from [`Event`].
    pub fn of<E: Event>(service: &str, data: &E) -> Self {
        // A derived `Serialize` of strings, numbers and ids cannot fail; `Null` would be
        // refused by the contract rather than published.
        let value = serde_json::to_value(data).unwrap_or_default();
        let mut envelope = Self::new(service, E::TYPE, value);
        envelope.dataschema = Some(E::dataschema());
        envelope
    }

    /// Sets the aggregate the event is about (`subject`).
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Puts the event in the flow `correlation_id` (a saga's id) instead of its own.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.correlationid = correlation_id;
        self
    }

    /// Marks this event as caused by `cause`: same flow, causation pointing at it.
    #[must_use]
    pub fn caused_by(mut self, cause_id: Uuid, correlation_id: Uuid) -> Self {
        self.causationid = Some(cause_id);
        self.correlationid = correlation_id;
        self
    }

    /// The service name taken from `source` (`/services/orders` → `orders`).
    pub fn service(&self) -> &str {
        self.source.rsplit('/').next().unwrap_or(&self.source)
    }

    /// The envelope as a message body: its JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing a struct of strings, ids and a `Value` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a message body.
    ///
    /// # Errors
    /// [`EnvelopeError`] when the body is not JSON, lacks a required attribute, or has an
    /// unsupported spec version.
    pub fn from_bytes(body: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope: Self = serde_json::from_slice(body)?;
        if envelope.specversion != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(envelope.specversion));
        }
        if envelope.event_type.trim().is_empty() {
            return Err(EnvelopeError::EmptyType);
        }
        Ok(envelope)
    }
}

/// An envelope's attributes without its data, read from a stored body without decoding the
/// data: what the relay needs to set a message's AMQP properties.
#[derive(Debug, Deserialize)]
pub(crate) struct EnvelopeHead {
    pub(crate) id: Uuid,
    pub(crate) source: String,
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) correlationid: Uuid,
    #[serde(default)]
    pub(crate) subject: Option<String>,
}

impl EnvelopeHead {
    /// # Errors
    /// [`EnvelopeError`] when the body is not an envelope.
    pub(crate) fn from_bytes(body: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(body)?)
    }

    /// The service name taken from `source` (`/services/orders` → `orders`).
    pub(crate) fn service(&self) -> &str {
        self.source.rsplit('/').next().unwrap_or(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_envelope_survives_a_round_trip_through_bytes() {
        let event = Envelope::new("orders", "order.created", json!({"total_cents": 1200}))
            .with_subject("o-1");
        let parsed = Envelope::from_bytes(&event.to_bytes()).unwrap();
        assert_eq!(parsed, event);
        assert_eq!(parsed.correlationid, parsed.id);
        assert_eq!(parsed.service(), "orders");
    }

    #[test]
    fn the_head_of_a_stored_envelope_is_read_without_its_data() {
        let event = Envelope::new("orders", "order.created", json!({"items": [1, 2, 3]}));
        let head = EnvelopeHead::from_bytes(&event.to_bytes()).unwrap();
        assert_eq!(head.id, event.id);
        assert_eq!(head.event_type, "order.created");
        assert_eq!(head.service(), "orders");
        assert_eq!(head.time, event.time);
        assert_eq!(head.correlationid, event.correlationid);
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_rejected_with_the_reason() {
        let error = Envelope::from_bytes(b"{\"hello\": 1}").unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
        let mut event = Envelope::new("orders", "order.created", json!({}));
        event.specversion = "0.3".into();
        let error = Envelope::from_bytes(&event.to_bytes()).unwrap_err();
        assert!(matches!(error, EnvelopeError::SpecVersion(_)));
    }
}
