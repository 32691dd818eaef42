//! Events of shipping's pickups: a carrier collecting a return's parcel.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::inventory::Item;
use crate::{Event, EventData};

/// A carrier's pickup of a return's parcel was booked at the customer's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupBookedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub pickup_id: Uuid,
    pub lines: Vec<Item>,
    pub country: String,
}

impl Event for PickupBookedV1 {
    const TYPE: &'static str = "pickup.booked";
    const VERSION: u32 = 1;
}

impl EventData for PickupBookedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            pickup_id: Uuid::now_v7(),
            lines: vec![Item {
                sku: "TEA-GREEN".into(),
                quantity: 1,
            }],
            country: "IE".into(),
        }
    }
}

/// Why no pickup could be booked; a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PickupFailure {
    NotServed,
    UnknownAddress,
}

/// No pickup could be booked for a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupFailedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub reason: PickupFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Event for PickupFailedV1 {
    const TYPE: &'static str = "pickup.failed";
    const VERSION: u32 = 1;
}

impl EventData for PickupFailedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            reason: PickupFailure::NotServed,
            country: Some("BR".into()),
        }
    }
}

/// A booked pickup was cancelled because its return was (compensation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupCancelledV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub pickup_id: Uuid,
}

impl Event for PickupCancelledV1 {
    const TYPE: &'static str = "pickup.cancelled";
    const VERSION: u32 = 1;
}

impl EventData for PickupCancelledV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            pickup_id: Uuid::now_v7(),
        }
    }
}
