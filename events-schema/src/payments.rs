//! Events of the payments service.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventData};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCapturedV1 {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub user_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

impl Event for PaymentCapturedV1 {
    const TYPE: &'static str = "payment.captured";
    const VERSION: u32 = 1;
}

impl EventData for PaymentCapturedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            payment_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            amount_cents: 2397,
            currency: "EUR".into(),
        }
    }
}

/// Why a payment was declined; a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeclineReason {
    CreditLimitExceeded,
    UnknownUser,
    UserDeactivated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDeclinedV1 {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub reason: DeclineReason,
}

impl Event for PaymentDeclinedV1 {
    const TYPE: &'static str = "payment.declined";
    const VERSION: u32 = 1;
}

impl EventData for PaymentDeclinedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            amount_cents: 999_999,
            currency: "EUR".into(),
            reason: DeclineReason::CreditLimitExceeded,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefundedV1 {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

impl Event for PaymentRefundedV1 {
    const TYPE: &'static str = "payment.refunded";
    const VERSION: u32 = 1;
}

impl EventData for PaymentRefundedV1 {
    fn sample() -> Self {
        Self {
            order_id: Uuid::now_v7(),
            payment_id: Uuid::now_v7(),
            amount_cents: 2397,
            currency: "EUR".into(),
        }
    }
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    PaymentCapturedV2 of PaymentCapturedV1, version 2
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    PaymentDeclinedV2 of PaymentDeclinedV1, version 2
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    PaymentRefundedV2 of PaymentRefundedV1, version 2
}

/// A closed return's lines were refunded to the customer's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReturnRefundedV1 {
    pub return_id: Uuid,
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

impl Event for PaymentReturnRefundedV1 {
    const TYPE: &'static str = "payment.return-refunded";
    const VERSION: u32 = 1;
}

impl EventData for PaymentReturnRefundedV1 {
    fn sample() -> Self {
        Self {
            return_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            payment_id: Uuid::now_v7(),
            amount_cents: 799,
            currency: "EUR".into(),
        }
    }
}
