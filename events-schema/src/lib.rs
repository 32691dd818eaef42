//! Conveyor's event contract: one JSON Schema (2020-12) per event type and version in
//! `schemas/<type>/v<N>.json`, a Rust type per event version that serializes to exactly what
//! its schema accepts, and the validation producers and consumers run on every event.
//!
//! # Layout
//!
//! - `catalog`: every schema file, compiled in, with its type and version.
//! - `contract`: validation of an event's data against its schema, with integers written as
//!   JSON integers within i64 and money under its ceilings; plugs into the runtime's outbox,
//!   publisher and consumer as a [`conveyor::Contract`]. HTTP ingest also checks the whole
//!   envelope (`EventContract::validate_event`).
//! - `money`: the ceilings on amounts of money, and which event fields they hold.
//! - `compat`: which schema changes break existing producers or consumers.
//! - `publishers`: who may publish each event type (its owner, and HTTP ingest for a few).
//! - `asyncapi`: the AsyncAPI 3.0 document of the events and who sends and receives them.
//! - `yaml`: a small YAML writer for that document.
//! - `users`, `products`, `orders`, `inventory`, `payments`, `shipping`, `returns`,
//!   `pickups`: the typed events.
//!
//! Schemas allow fields they do not list, on purpose: a producer may add an optional field
//! to a version without breaking consumers that validate with the older file.

/// A later version with an earlier one's shape and a stricter schema (v2 of the money events
/// states v1's ceilings as `maximum`): the same fields, in a type of its own so that emitting
/// it writes its own `dataschema`. A handler of the earlier type reads it as it is.
macro_rules! same_shape_version {
    ($(#[$doc:meta])* $name:ident of $earlier:ty, version $version:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $earlier);

        impl crate::Event for $name {
            const TYPE: &'static str = <$earlier as crate::Event>::TYPE;
            const VERSION: u32 = $version;
        }

        impl crate::EventData for $name {
            fn sample() -> Self {
                Self(<$earlier as crate::EventData>::sample())
            }
        }

        impl From<$earlier> for $name {
            fn from(earlier: $earlier) -> Self {
                Self(earlier)
            }
        }
    };
}

pub mod asyncapi;
mod catalog;
pub mod compat;
mod contract;
pub mod inventory;
pub mod money;
pub mod orders;
pub mod payments;
pub mod pickups;
pub mod products;
pub mod publishers;
pub mod returns;
pub mod shipping;
pub mod users;
mod yaml;

use serde::Serialize;

pub use catalog::{ENVELOPE_SCHEMA, SCHEMAS, SchemaFile, schema_for};
pub use contract::{
    ContractError, EventContract, EventViolations, FieldViolation, OwnEvents, Violation,
};
pub use yaml::to_yaml;

pub use conveyor::Event;

/// A Rust type for one version of one event's `data`, whose schema is in `schemas/`.
pub trait EventData: Event {
    /// A realistic value, used to prove the type and its schema agree.
    fn sample() -> Self;
}

/// Wraps typed data in an envelope from `service`, with the right type and `dataschema`.
pub fn envelope<E: EventData>(service: &str, data: &E) -> conveyor::Envelope {
    conveyor::Envelope::of(service, data)
}

/// The two ways an envelope's `dataschema` names `event_type` at `version`: the absolute URI
/// CloudEvents asks for (`urn:conveyor:events-schema:order.created:v2`), and the relative
/// reference that v1 envelopes carry and today's producers still write
/// (`events-schema/order.created/v2`). Consumers read both.
pub fn dataschema_forms(event_type: &str, version: u32) -> [String; 2] {
    [
        format!("urn:conveyor:events-schema:{event_type}:v{version}"),
        format!("events-schema/{event_type}/v{version}"),
    ]
}

/// The name of a type and version in code, as the Rust types and generated models spell it:
/// `order.deadline-passed` v1 is `OrderDeadlinePassedV1`.
pub fn type_name(event_type: &str, version: u32) -> String {
    let mut name = String::new();
    for word in event_type.split(['.', '-']) {
        let mut chars = word.chars();
        name.extend(chars.next().map(|first| first.to_ascii_uppercase()));
        name.push_str(chars.as_str());
    }
    format!("{name}V{version}")
}

/// A schema file as another document embeds it (AsyncAPI, the gateway's OpenAPI): without
/// the file's own `$schema` and `$id`.
pub fn embedded_schema(text: &str) -> serde_json::Value {
    let mut schema: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("$id");
    }
    schema
}

/// A closed-list value as the contract spells it (`payment-declined`).
pub fn wire_name<T: Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}
