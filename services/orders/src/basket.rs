//! What a customer asks for, checked and priced before anything is stored: each SKU once,
//! quantities and totals within sane ceilings, money added with checked arithmetic.

use std::collections::BTreeMap;

use events_schema::money::{MAX_PRICE_CENTS, MAX_TOTAL_CENTS};
use events_schema::orders::PricedItem;

pub(crate) const MAX_ITEMS: usize = 100;
pub(crate) const MAX_QUANTITY: i32 = 1000;

/// Why a basket cannot be placed; each message tells the customer what to change.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BasketError {
    #[error("an order needs 1 to {MAX_ITEMS} items")]
    ItemCount,
    #[error("quantity {quantity} of {sku} is not between 1 and {MAX_QUANTITY}")]
    Quantity { sku: String, quantity: i64 },
    #[error("unknown sku {0}")]
    UnknownSkus(String),
    #[error("the items are priced in different currencies")]
    MixedCurrencies,
    #[error("the price of {0} is outside 0 to {MAX_PRICE_CENTS} cents; ask for it to be corrected")]
    Price(String),
    #[error("the order's total would exceed {MAX_TOTAL_CENTS} cents; split it into smaller orders")]
    Total,
}

/// The lines of a basket with each SKU once (quantities of repeated SKUs added up), in the
/// order the SKUs first appear.
pub(crate) fn merge_lines(
    lines: impl IntoIterator<Item = (String, i32)>,
) -> Result<Vec<(String, i32)>, BasketError> {
    let mut merged: Vec<(String, i64)> = Vec::new();
    for (sku, quantity) in lines {
        match merged.iter_mut().find(|(known, _)| *known == sku) {
            Some((_, total)) => *total += i64::from(quantity),
            None => merged.push((sku, i64::from(quantity))),
        }
    }
    if merged.is_empty() || merged.len() > MAX_ITEMS {
        return Err(BasketError::ItemCount);
    }
    merged
        .into_iter()
        .map(|(sku, quantity)| match i32::try_from(quantity) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok((sku, q)),
            _ => Err(BasketError::Quantity { sku, quantity }),
        })
        .collect()
}

/// A product as orders' cached copy knows it.
pub(crate) struct Price {
    pub(crate) cents: i64,
    pub(crate) currency: String,
}

/// A priced basket, ready to store.
#[derive(Debug)]
pub(crate) struct Priced {
    pub(crate) items: Vec<PricedItem>,
    pub(crate) total_cents: i64,
    pub(crate) currency: String,
}

/// Prices merged `lines` from `prices`; every SKU must be known, in one currency.
pub(crate) fn price(
    lines: &[(String, i32)],
    prices: &BTreeMap<String, Price>,
) -> Result<Priced, BasketError> {
    let unknown: Vec<&str> = lines
        .iter()
        .map(|(sku, _)| sku.as_str())
        .filter(|sku| !prices.contains_key(*sku))
        .collect();
    if !unknown.is_empty() {
        return Err(BasketError::UnknownSkus(unknown.join(", ")));
    }
    let mut items = Vec::with_capacity(lines.len());
    let mut total_cents: i64 = 0;
    let mut currency: Option<&str> = None;
    for (sku, quantity) in lines {
        let price = &prices[sku];
        if *currency.get_or_insert(&price.currency) != price.currency {
            return Err(BasketError::MixedCurrencies);
        }
        if !(0..=MAX_PRICE_CENTS).contains(&price.cents) {
            return Err(BasketError::Price(sku.clone()));
        }
        total_cents = i64::from(*quantity)
            .checked_mul(price.cents)
            .and_then(|line| line.checked_add(total_cents))
            .filter(|total| *total <= MAX_TOTAL_CENTS)
            .ok_or(BasketError::Total)?;
        items.push(PricedItem {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price_cents: price.cents,
        });
    }
    Ok(Priced {
        items,
        total_cents,
        currency: currency.unwrap_or_default().to_owned(),
    })
}

/// Whether a stored order holds the same lines as a new request (in any order), so that a
/// repeated Idempotency-Key is a retry of the same request and not a different one.
pub(crate) fn same_lines(stored: &[PricedItem], requested: &[(String, i32)]) -> bool {
    let stored: BTreeMap<&str, i32> = stored
        .iter()
        .map(|item| (item.sku.as_str(), item.quantity))
        .collect();
    let requested: BTreeMap<&str, i32> = requested
        .iter()
        .map(|(sku, quantity)| (sku.as_str(), *quantity))
        .collect();
    stored == requested
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(entries: &[(&str, i64, &str)]) -> BTreeMap<String, Price> {
        entries
            .iter()
            .map(|(sku, cents, currency)| {
                (
                    (*sku).to_owned(),
                    Price {
                        cents: *cents,
                        currency: (*currency).to_owned(),
                    },
                )
            })
            .collect()
    }

    fn lines(entries: &[(&str, i32)]) -> Vec<(String, i32)> {
        entries
            .iter()
            .map(|(sku, q)| ((*sku).to_owned(), *q))
            .collect()
    }

    #[test]
    fn a_total_that_would_wrap_is_refused_not_charged() {
        let huge = (1_i64 << 62) + 25;
        let priced = price(&lines(&[("A", 4)]), &prices(&[("A", huge, "EUR")]));
        assert_eq!(priced.unwrap_err(), BasketError::Price("A".into()));
        let at_ceiling = prices(&[("A", MAX_PRICE_CENTS, "EUR"), ("B", MAX_PRICE_CENTS, "EUR")]);
        let priced = price(&lines(&[("A", 1000), ("B", 1000)]), &at_ceiling);
        assert_eq!(priced.unwrap_err(), BasketError::Total);
    }

    #[test]
    fn repeated_skus_become_one_line() {
        let merged = merge_lines(lines(&[("A", 2), ("B", 1), ("A", 3)])).unwrap();
        assert_eq!(merged, lines(&[("A", 5), ("B", 1)]));
        let too_many = merge_lines(lines(&[("A", 600), ("A", 600)]));
        assert!(matches!(
            too_many,
            Err(BasketError::Quantity { quantity: 1200, .. })
        ));
        assert_eq!(merge_lines(Vec::new()), Err(BasketError::ItemCount));
    }

    #[test]
    fn a_basket_is_priced_line_by_line() {
        let table = prices(&[("A", 250, "EUR"), ("B", 1000, "EUR"), ("C", 5, "USD")]);
        let priced = price(&lines(&[("A", 4), ("B", 1)]), &table).unwrap();
        assert_eq!(priced.total_cents, 2000);
        assert_eq!(priced.currency, "EUR");
        let mixed = price(&lines(&[("A", 1), ("C", 1)]), &table);
        assert_eq!(mixed.unwrap_err(), BasketError::MixedCurrencies);
        let unknown = price(&lines(&[("A", 1), ("X", 1), ("Y", 1)]), &table);
        assert_eq!(
            unknown.unwrap_err(),
            BasketError::UnknownSkus("X, Y".into())
        );
    }

    #[test]
    fn the_same_lines_in_another_order_are_the_same_request() {
        let stored = price(
            &lines(&[("A", 1), ("B", 2)]),
            &prices(&[("A", 1, "EUR"), ("B", 1, "EUR")]),
        )
        .unwrap()
        .items;
        assert!(same_lines(&stored, &lines(&[("B", 2), ("A", 1)])));
        assert!(!same_lines(&stored, &lines(&[("A", 1), ("B", 3)])));
        assert!(!same_lines(&stored, &lines(&[("A", 1)])));
    }
}
