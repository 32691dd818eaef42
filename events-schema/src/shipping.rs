//! Events of the shipping service.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::users::Address;
use crate::{Event, EventData};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentScheduledV1 {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    pub user_id: Uuid,
    pub address: Address,
}

impl Event for ShipmentScheduledV1 {
    const TYPE: &'static str = "shipment.scheduled";
    const VERSION: u32 = 1;
}

impl EventData for ShipmentScheduledV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            shipment_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            address: Address {
                line1: "1 Main Street".into(),
                city: "Dublin".into(),
                postal_code: "D01 F5P2".into(),
                country: "IE".into(),
            },
        }
    }
}

/// Why no shipment could be scheduled; a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShipmentFailure {
    UndeliverableCountry,
    UnknownAddress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentFailedV1 {
    pub order_id: Uuid,
    pub reason: ShipmentFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Event for ShipmentFailedV1 {
    const TYPE: &'static str = "shipment.failed";
    const VERSION: u32 = 1;
}

impl EventData for ShipmentFailedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            reason: ShipmentFailure::UndeliverableCountry,
            country: Some("AQ".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentCancelledV1 {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
}

impl Event for ShipmentCancelledV1 {
    const TYPE: &'static str = "shipment.cancelled";
    const VERSION: u32 = 1;
}

impl EventData for ShipmentCancelledV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            shipment_id: Uuid::now_v7(),
        }
    }
}
