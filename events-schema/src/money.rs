//! Ceilings on amounts of money, shared by every service that accepts one. Far above any real
//! price or basket, far below where i64 arithmetic on them could wrap: 100 lines of 1,000
//! units at the highest price stay under 2^63.

/// The highest unit price a product may have: 100 million in the currency's units.
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;

/// The highest total an order may reach, and the highest credit limit: 10 billion units.
pub const MAX_TOTAL_CENTS: i64 = 1_000_000_000_000;

/// A money field the contract holds to a ceiling that its schema does not state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    pub event_type: &'static str,
    pub version: u32,
    /// The field's path in `data`, `[]` standing for every item of a list
    /// (`items[].unit_price_cents`).
    pub field: &'static str,
    /// The highest value allowed, inclusive.
    pub max: i64,
}

/// Every money field of the v1 schemas, with the ceiling above that the services already
/// hold it to: prices at [`MAX_PRICE_CENTS`], totals, amounts charged and credit limits at
/// [`MAX_TOTAL_CENTS`]. The contract check (`EventContract::validate`, so every outbox,
/// publisher, consumer and HTTP ingest) refuses a value above its ceiling.
///
/// Why a list here and not `maximum` in the schemas: the v1 files were published without
/// one, and adding a bound to a published version is a breaking change by the contract's
/// rules (`conveyor schema check` refuses a moved or added bound: producers and consumers
/// of one version run different releases at once). The services never produce such values
/// (each refuses them at its HTTP edge), so enforcing them here changes no legitimate
/// event, and the schema files stay as consumers elsewhere validate with them. A v2 of these
/// events states its ceilings as `maximum` and needs no entry. A test fails if a field of a
/// schema whose name ends in `_cents` has neither a `maximum` nor an entry here, or if an
/// entry names no integer field of its schema.
pub const CEILINGS: &[Ceiling] = &[
    ceiling("product.created", "price_cents", MAX_PRICE_CENTS),
    ceiling("product.updated", "price_cents", MAX_PRICE_CENTS),
    ceiling("order.created", "items[].unit_price_cents", MAX_PRICE_CENTS),
    ceiling("order.created", "total_cents", MAX_TOTAL_CENTS),
    ceiling("order.confirmed", "total_cents", MAX_TOTAL_CENTS),
    ceiling("inventory.reserved", "total_cents", MAX_TOTAL_CENTS),
    ceiling("payment.captured", "amount_cents", MAX_TOTAL_CENTS),
    ceiling("payment.declined", "amount_cents", MAX_TOTAL_CENTS),
    ceiling("payment.refunded", "amount_cents", MAX_TOTAL_CENTS),
    ceiling("user.registered", "credit_limit_cents", MAX_TOTAL_CENTS),
    ceiling("user.updated", "credit_limit_cents", MAX_TOTAL_CENTS),
];

/// A v1 field's ceiling.
const fn ceiling(event_type: &'static str, field: &'static str, max: i64) -> Ceiling {
    Ceiling {
        event_type,
        version: 1,
        field,
        max,
    }
}

/// The ceiling of `field` (named as in [`Ceiling::field`]) of `event_type` at `version`, if
/// the contract holds it to one.
pub fn ceiling_of(event_type: &str, version: u32, field: &str) -> Option<i64> {
    CEILINGS
        .iter()
        .find(|c| c.event_type == event_type && c.version == version && c.field == field)
        .map(|c| c.max)
}
