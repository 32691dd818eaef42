//! Events of a return: a customer sending lines of a confirmed order back. Orders starts and
//! ends it; shipping says when the carrier collected the parcel (`return.received`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::inventory::Item;
use crate::{Event, EventData};

fn sample_lines() -> Vec<Item> {
    vec![Item {
        sku: "TEA-GREEN".into(),
        quantity: 1,
    }]
}

/// A customer asked to return lines of a confirmed order; the return's run starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRequestedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub lines: Vec<Item>,
    /// What the lines cost when bought: refunded once the return closes.
    pub refund_cents: i64,
    pub currency: String,
}

impl Event for ReturnRequestedV1 {
    const TYPE: &'static str = "return.requested";
    const VERSION: u32 = 1;
}

impl EventData for ReturnRequestedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            lines: sample_lines(),
            refund_cents: 799,
            currency: "EUR".into(),
        }
    }
}

/// The carrier has the parcel: the return succeeded, inventory restocks its lines and
/// payments refunds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnClosedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub lines: Vec<Item>,
    pub refund_cents: i64,
    pub currency: String,
}

impl Event for ReturnClosedV1 {
    const TYPE: &'static str = "return.closed";
    const VERSION: u32 = 1;
}

impl EventData for ReturnClosedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            lines: sample_lines(),
            refund_cents: 799,
            currency: "EUR".into(),
        }
    }
}

/// Why a return was cancelled; a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReturnCancelReason {
    PickupFailed,
    DeadlinePassed,
    CustomerCancelled,
}

/// The return failed or was cancelled; services that acted on it compensate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnCancelledV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: ReturnCancelReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The products the return named.
    pub skus: Vec<String>,
}

impl Event for ReturnCancelledV1 {
    const TYPE: &'static str = "return.cancelled";
    const VERSION: u32 = 1;
}

impl EventData for ReturnCancelledV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            reason: ReturnCancelReason::CustomerCancelled,
            detail: Some("cancelled by the customer".into()),
            skus: vec!["TEA-GREEN".into()],
        }
    }
}

/// A return's deadline passed: orders schedules this event when the return is requested
/// and takes it back when the return ends, and cancels the return as deadline-passed if it
/// is still pending when the event arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnDeadlinePassedV1 {
    pub return_id: Uuid,
    /// The return's timeout when it was requested, in milliseconds of watched time.
    pub timeout_ms: u64,
}

impl Event for ReturnDeadlinePassedV1 {
    const TYPE: &'static str = "return.deadline-passed";
    const VERSION: u32 = 1;
}

impl EventData for ReturnDeadlinePassedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            timeout_ms: 600_000,
        }
    }
}

/// The carrier collected a return's parcel: orders closes the return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnReceivedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub pickup_id: Uuid,
    pub lines: Vec<Item>,
}

impl Event for ReturnReceivedV1 {
    const TYPE: &'static str = "return.received";
    const VERSION: u32 = 1;
}

impl EventData for ReturnReceivedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            pickup_id: Uuid::now_v7(),
            lines: sample_lines(),
        }
    }
}
