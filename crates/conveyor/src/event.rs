//! What an event type is to the runtime: its name on the wire and the data it carries.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One version of one event type's `data`, named once: handlers take their event type from
/// here, and emitting one fills in the envelope's `type` and `dataschema`.
///
/// Renaming `TYPE` renames the routing key every subscriber's queue binds, so it is a
/// breaking change for every consumer: publish a new type instead.
pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The event type, also the routing key (`order.created`).
    const TYPE: &'static str;
    /// The version of the data's schema, written to the envelope's `dataschema`.
    const VERSION: u32 = 1;

    /// The envelope's `dataschema` for this version (`events-schema/order.created/v1`).
    fn dataschema() -> String {
        format!("events-schema/{}/v{}", Self::TYPE, Self::VERSION)
    }
}
