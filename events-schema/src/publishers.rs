//! Who may publish each event type: the service that owns it and, for the few types that
//! producing systems outside AMQP may send, the gateway's HTTP ingest. Consumers refuse an
//! event whose broker user is none of these (`forbidden-source`), and the broker users'
//! topic permissions are generated from the same table.

/// The gateway, as a publisher of ingested events.
pub const GATEWAY: &str = "gateway";

/// Each event type and the service that owns it (the only service that emits it).
pub const OWNERS: &[(&str, &str)] = &[
    ("user.registered", "users"),
    ("user.updated", "users"),
    ("user.deactivated", "users"),
    ("product.created", "inventory"),
    ("product.updated", "inventory"),
    ("inventory.reserved", "inventory"),
    ("inventory.rejected", "inventory"),
    ("inventory.released", "inventory"),
    ("order.created", "orders"),
    ("order.confirmed", "orders"),
    ("order.cancelled", "orders"),
    ("order.deadline-passed", "orders"),
    ("payment.captured", "payments"),
    ("payment.declined", "payments"),
    ("payment.refunded", "payments"),
    ("shipment.scheduled", "shipping"),
    ("shipment.failed", "shipping"),
    ("shipment.cancelled", "shipping"),
    ("return.requested", "orders"),
    ("return.closed", "orders"),
    ("return.cancelled", "orders"),
    ("return.deadline-passed", "orders"),
    ("return.received", "shipping"),
    ("pickup.booked", "shipping"),
    ("pickup.failed", "shipping"),
    ("pickup.cancelled", "shipping"),
    ("inventory.restocked", "inventory"),
    ("payment.return-refunded", "payments"),
];

/// The types a producing system may send through `POST /api/events`: catalogue data that
/// an outside system (a warehouse or PIM feed) may own. Saga events are never among them:
/// an outside system must not capture a payment or confirm a shipment.
pub const INGESTIBLE: &[&str] = &["product.created", "product.updated"];

/// The service that owns `event_type`, if it is a known type.
pub fn owner_of(event_type: &str) -> Option<&'static str> {
    OWNERS
        .iter()
        .find(|(known, _)| *known == event_type)
        .map(|(_, owner)| *owner)
}

/// Everyone who may publish `event_type`: its owner, and the gateway where it is ingestible.
/// Empty for an unknown type.
pub fn publishers_of(event_type: &str) -> Vec<&'static str> {
    let mut publishers: Vec<&'static str> = owner_of(event_type).into_iter().collect();
    if is_ingestible(event_type) {
        publishers.push(GATEWAY);
    }
    publishers
}

/// Whether producing systems may send `event_type` over HTTP ingest.
pub fn is_ingestible(event_type: &str) -> bool {
    INGESTIBLE.contains(&event_type)
}

/// The types `publisher` (a service, or [`GATEWAY`]) may publish.
pub fn published_by(publisher: &str) -> Vec<&'static str> {
    if publisher == GATEWAY {
        return INGESTIBLE.to_vec();
    }
    OWNERS
        .iter()
        .filter(|(_, owner)| *owner == publisher)
        .map(|(event_type, _)| *event_type)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::SCHEMAS;

    /// `events-schema/src/publishers.rs:<line>` of `OWNERS`, where a missing entry goes.
    fn owners_at() -> String {
        let line = include_str!("publishers.rs")
            .lines()
            .position(|line| line.starts_with("pub const OWNERS"))
            .map_or(0, |index| index + 1);
        format!("events-schema/src/publishers.rs:{line}")
    }

    #[test]
    fn every_type_with_a_schema_has_exactly_one_owner() {
        let with_schema: BTreeSet<&str> = SCHEMAS.iter().map(|file| file.event_type).collect();
        let mut owned = BTreeSet::new();
        let twice: Vec<&str> = OWNERS
            .iter()
            .map(|(event_type, _)| *event_type)
            .filter(|event_type| !owned.insert(*event_type))
            .collect();
        assert!(
            twice.is_empty(),
            "OWNERS at {} lists {twice:?} more than once: a type has exactly one owner, so keep one entry each",
            owners_at()
        );
        let mut problems = Vec::new();
        for event_type in with_schema.difference(&owned) {
            problems.push(format!(
                "{event_type} has a schema but no owner: add `(\"{event_type}\", \"SERVICE\"),` to OWNERS at {}, SERVICE being the one service that emits it",
                owners_at()
            ));
        }
        for event_type in owned.difference(&with_schema) {
            problems.push(format!(
                "OWNERS at {} names {event_type}, which has no schema in the catalog: add events-schema/schemas/{event_type}/v1.json and `schema!(\"{event_type}\", 1),` to SCHEMAS in events-schema/src/catalog.rs, or remove the entry",
                owners_at()
            ));
        }
        assert!(
            problems.is_empty(),
            "{}\n(For a new event type, `conveyor new event TYPE --owner SERVICE` writes the schema, its catalog entry and its owner at once.)",
            problems.join("\n")
        );
        let unowned: Vec<&str> = INGESTIBLE
            .iter()
            .copied()
            .filter(|event_type| owner_of(event_type).is_none())
            .collect();
        assert!(
            unowned.is_empty(),
            "INGESTIBLE names {unowned:?}, which OWNERS does not: an ingestible type needs an owner too"
        );
    }

    #[test]
    fn ingestible_types_have_the_gateway_beside_their_owner() {
        assert_eq!(publishers_of("product.updated"), ["inventory", GATEWAY]);
        assert_eq!(publishers_of("payment.captured"), ["payments"]);
        assert!(publishers_of("no.such.type").is_empty());
        assert!(!published_by(GATEWAY).contains(&"payment.captured"));
    }
}
