//! Events of the inventory service's product catalogue.

use serde::{Deserialize, Serialize};

use crate::{Event, EventData};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCreatedV1 {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub version: i64,
}

impl Event for ProductCreatedV1 {
    const TYPE: &'static str = "product.created";
    const VERSION: u32 = 1;
}

impl EventData for ProductCreatedV1 {
    fn sample() -> Self {
        Self {
            sku: "TEA-GREEN".into(),
            name: "Green tea, 100 g".into(),
            price_cents: 799,
            currency: "EUR".into(),
            version: 1,
        }
    }
}

/// The whole product after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpdatedV1 {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub version: i64,
}

impl Event for ProductUpdatedV1 {
    const TYPE: &'static str = "product.updated";
    const VERSION: u32 = 1;
}

impl EventData for ProductUpdatedV1 {
    fn sample() -> Self {
        Self {
            sku: "TEA-GREEN".into(),
            name: "Green tea, 250 g".into(),
            price_cents: 1799,
            currency: "EUR".into(),
            version: 2,
        }
    }
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    ProductCreatedV2 of ProductCreatedV1, version 2
}

same_shape_version! {
    /// v2: v1's fields, with the ceilings on money in the schema.
    ProductUpdatedV2 of ProductUpdatedV1, version 2
}
