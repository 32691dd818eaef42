//! Events of the inventory service's reservations.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventData};

/// A quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: i32,
}

fn sample_items() -> Vec<Item> {
    vec![Item {
        sku: "TEA-GREEN".into(),
        quantity: 3,
    }]
}

/// Carries the order's payer and total on, so payments can charge without its own copy of
/// orders (optional fields: added after v1 was first published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReservedV1 {
    pub order_id: Uuid,
    pub items: Vec<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl Event for InventoryReservedV1 {
    const TYPE: &'static str = "inventory.reserved";
    const VERSION: u32 = 1;
}

impl EventData for InventoryReservedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            items: sample_items(),
            user_id: Some(Uuid::now_v7()),
            total_cents: Some(2397),
            currency: Some("EUR".into()),
        }
    }
}

/// Why stock could not be reserved; a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectReason {
    InsufficientStock,
    UnknownSku,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRejectedV1 {
    pub order_id: Uuid,
    pub reason: RejectReason,
    pub skus: Vec<String>,
}

impl Event for InventoryRejectedV1 {
    const TYPE: &'static str = "inventory.rejected";
    const VERSION: u32 = 1;
}

impl EventData for InventoryRejectedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            reason: RejectReason::InsufficientStock,
            skus: vec!["TEA-GREEN".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReleasedV1 {
    pub order_id: Uuid,
    pub items: Vec<Item>,
}

impl Event for InventoryReleasedV1 {
    const TYPE: &'static str = "inventory.released";
    const VERSION: u32 = 1;
}

impl EventData for InventoryReleasedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            items: sample_items(),
        }
    }
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    InventoryReservedV2 of InventoryReservedV1, version 2
}

/// A closed return's lines were put back in stock, for sale again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRestockedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub items: Vec<Item>,
}

impl Event for InventoryRestockedV1 {
    const TYPE: &'static str = "inventory.restocked";
    const VERSION: u32 = 1;
}

impl EventData for InventoryRestockedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            items: sample_items(),
        }
    }
}
