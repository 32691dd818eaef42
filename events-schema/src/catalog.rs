//! Every schema file, compiled into the binary so producers and consumers validate without
//! reading files at run time. A test fails if a file in `schemas/` is missing here.

/// One schema file.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFile {
    pub event_type: &'static str,
    pub version: u32,
    pub text: &'static str,
}

macro_rules! schema {
    ($event_type:literal, $version:literal) => {
        SchemaFile {
            event_type: $event_type,
            version: $version,
            text: include_str!(concat!("../schemas/", $event_type, "/v", $version, ".json")),
        }
    };
}

/// The CloudEvents envelope every event travels in.
pub const ENVELOPE_SCHEMA: &str = include_str!("../schemas/envelope/v2.json");

pub const SCHEMAS: &[SchemaFile] = &[
    schema!("user.registered", 1),
    schema!("user.updated", 1),
    schema!("user.deactivated", 1),
    schema!("product.created", 1),
    schema!("product.updated", 1),
    schema!("order.created", 1),
    schema!("order.confirmed", 1),
    schema!("order.cancelled", 1),
    schema!("order.deadline-passed", 1),
    schema!("inventory.reserved", 1),
    schema!("inventory.rejected", 1),
    schema!("inventory.released", 1),
    schema!("payment.captured", 1),
    schema!("payment.declined", 1),
    schema!("payment.refunded", 1),
    schema!("shipment.scheduled", 1),
    schema!("shipment.failed", 1),
    schema!("shipment.cancelled", 1),
    schema!("return.requested", 1),
    schema!("return.closed", 1),
    schema!("return.cancelled", 1),
    schema!("return.deadline-passed", 1),
    schema!("return.received", 1),
    schema!("pickup.booked", 1),
    schema!("pickup.failed", 1),
    schema!("pickup.cancelled", 1),
    schema!("inventory.restocked", 1),
    schema!("payment.return-refunded", 1),
    schema!("user.registered", 2),
    schema!("user.updated", 2),
    schema!("product.created", 2),
    schema!("product.updated", 2),
    schema!("order.created", 2),
    schema!("order.confirmed", 2),
    schema!("inventory.reserved", 2),
    schema!("payment.captured", 2),
    schema!("payment.declined", 2),
    schema!("payment.refunded", 2),
];

/// The schema of one event type and version, if the contract has it.
pub fn schema_for(event_type: &str, version: u32) -> Option<&'static SchemaFile> {
    SCHEMAS
        .iter()
        .find(|file| file.event_type == event_type && file.version == version)
}
