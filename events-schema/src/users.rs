//! Events of the users service.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, EventData};

/// A postal address; `country` is an ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

impl Address {
    fn sample() -> Self {
        Self {
            line1: "12 Rue de la Paix".into(),
            city: "Paris".into(),
            postal_code: "75002".into(),
            country: "FR".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegisteredV1 {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub address: Address,
    pub credit_limit_cents: i64,
    pub currency: String,
    pub version: i64,
}

impl Event for UserRegisteredV1 {
    const TYPE: &'static str = "user.registered";
    const VERSION: u32 = 1;
}

impl EventData for UserRegisteredV1 {
    fn sample() -> Self {
        Self {
            user_id: Uuid::now_v7(),
            email: "grace@example.com".into(),
            name: "Grace Hopper".into(),
            address: Address::sample(),
            credit_limit_cents: 100_000,
            currency: "EUR".into(),
            version: 1,
        }
    }
}

/// The whole user after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdatedV1 {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub address: Address,
    pub credit_limit_cents: i64,
    pub currency: String,
    pub version: i64,
}

impl Event for UserUpdatedV1 {
    const TYPE: &'static str = "user.updated";
    const VERSION: u32 = 1;
}

impl EventData for UserUpdatedV1 {
    fn sample() -> Self {
        let registered = UserRegisteredV1::sample();
        Self {
            user_id: registered.user_id,
            email: registered.email,
            name: "Grace B. Hopper".into(),
            address: registered.address,
            credit_limit_cents: 150_000,
            currency: registered.currency,
            version: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeactivatedV1 {
    pub user_id: Uuid,
    pub version: i64,
}

impl Event for UserDeactivatedV1 {
    const TYPE: &'static str = "user.deactivated";
    const VERSION: u32 = 1;
}

impl EventData for UserDeactivatedV1 {
    fn sample() -> Self {
        Self {
            user_id: Uuid::now_v7(),
            version: 3,
        }
    }
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    UserRegisteredV2 of UserRegisteredV1, version 2
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    UserUpdatedV2 of UserUpdatedV1, version 2
}
