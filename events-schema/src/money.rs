//! Ceilings on amounts of money, shared by every service that accepts one. Far above any real
//! price or basket, far below where i64 arithmetic on them could wrap: 100 lines of 1,000
//! units at the highest price stay under 2^63.

/// The highest unit price a product may have: 100 million in the currency's units.
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;

/// The highest total an order may reach, and the highest credit limit: 10 billion units.
pub const MAX_TOTAL_CENTS: i64 = 1_000_000_000_000;
