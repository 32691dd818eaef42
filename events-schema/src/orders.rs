//! Events of the orders service: the saga's start and end.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventData};

/// One line of an order, priced when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedItem {
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreatedV1 {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<PricedItem>,
    pub total_cents: i64,
    pub currency: String,
}

impl Event for OrderCreatedV1 {
    const TYPE: &'static str = "order.created";
    const VERSION: u32 = 1;
}

impl EventData for OrderCreatedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            items: vec![PricedItem {
                sku: "TEA-GREEN".into(),
                quantity: 3,
                unit_price_cents: 799,
            }],
            total_cents: 2397,
            currency: "EUR".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmedV1 {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub total_cents: i64,
    pub currency: String,
}

impl Event for OrderConfirmedV1 {
    const TYPE: &'static str = "order.confirmed";
    const VERSION: u32 = 1;
}

impl EventData for OrderConfirmedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            total_cents: 2397,
            currency: "EUR".into(),
        }
    }
}

/// Why an order was cancelled; a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CancelReason {
    InventoryRejected,
    PaymentDeclined,
    ShipmentFailed,
    DeadlinePassed,
    CustomerCancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelledV1 {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: CancelReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The products the order named (absent from producers that predate the field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skus: Vec<String>,
}

impl Event for OrderCancelledV1 {
    const TYPE: &'static str = "order.cancelled";
    const VERSION: u32 = 1;
}

impl EventData for OrderCancelledV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            reason: CancelReason::DeadlinePassed,
            detail: Some("no answer from payments within 30 s".into()),
            skus: vec!["TEA-GREEN".into()],
        }
    }
}

/// An order's saga deadline passed: orders schedules this event when it places the order
/// and takes it back when the order ends, and cancels the order as deadline-passed if it is
/// still pending when the event arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDeadlinePassedV1 {
    pub order_id: Uuid,
    /// The order's saga timeout when it was placed, in milliseconds of watched time.
    pub timeout_ms: u64,
}

impl Event for OrderDeadlinePassedV1 {
    const TYPE: &'static str = "order.deadline-passed";
    const VERSION: u32 = 1;
}

impl EventData for OrderDeadlinePassedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            timeout_ms: 120_000,
        }
    }
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    OrderCreatedV2 of OrderCreatedV1, version 2
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    OrderConfirmedV2 of OrderConfirmedV1, version 2
}
