//! What may be returned of an order, decided before anything is stored: each line one the
//! order bought, named once, never more than was bought across all of the order's returns
//! not cancelled; refunded at the price it was bought at.

use events_schema::inventory::Item;
use events_schema::orders::PricedItem;
use uuid::Uuid;

use crate::basket::{MAX_ITEMS, MAX_QUANTITY};

/// The lines a return takes back and what they are refunded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Returnable {
    pub(crate) lines: Vec<Item>,
    pub(crate) refund_cents: i64,
}

/// Why a return cannot be requested; each message names the field and what to change.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReturnError {
    #[error("lines: a return needs 1 to {MAX_ITEMS} lines")]
    LineCount,
    #[error("lines[{index}].quantity: {quantity} is not between 1 and {MAX_QUANTITY}")]
    Quantity { index: usize, quantity: i32 },
    #[error("lines[{index}].sku: {sku} is named twice; name each SKU once")]
    Repeated { index: usize, sku: String },
    #[error("lines[{index}].sku: order {order_id} did not buy {sku}")]
    NotBought {
        index: usize,
        sku: String,
        order_id: Uuid,
    },
    #[error(
        "lines[{index}].quantity: {asked} of {sku} asked back, but {left} of the {bought} bought are left to return"
    )]
    TooMany {
        index: usize,
        sku: String,
        asked: i32,
        left: i32,
        bought: i32,
    },
}

/// Whether a repeated request asks the same lines as the return it made, whatever their
/// order: a repeat is the same request, not a different one under the same key.
pub(crate) fn same_lines(stored: &[Item], asked: &[(String, i32)]) -> bool {
    let mut stored: Vec<(&str, i32)> = stored
        .iter()
        .map(|line| (line.sku.as_str(), line.quantity))
        .collect();
    let mut asked: Vec<(&str, i32)> = asked
        .iter()
        .map(|(sku, quantity)| (sku.as_str(), *quantity))
        .collect();
    stored.sort_unstable();
    asked.sort_unstable();
    stored == asked
}

/// What `asked` takes back of order `order_id`, which bought `bought`, and of which the
/// returns not cancelled took `returned` already.
pub(crate) fn returnable(
    order_id: Uuid,
    bought: &[PricedItem],
    returned: &[Item],
    asked: &[(String, i32)],
) -> Result<Returnable, ReturnError> {
    if asked.is_empty() || asked.len() > MAX_ITEMS {
        return Err(ReturnError::LineCount);
    }
    let mut lines = Vec::with_capacity(asked.len());
    let mut refund_cents: i64 = 0;
    for (index, (sku, quantity)) in asked.iter().enumerate() {
        let (sku, quantity) = (sku.clone(), *quantity);
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(ReturnError::Quantity { index, quantity });
        }
        if asked[..index].iter().any(|(earlier, _)| *earlier == sku) {
            return Err(ReturnError::Repeated { index, sku });
        }
        let Some(line) = bought.iter().find(|line| line.sku == sku) else {
            return Err(ReturnError::NotBought {
                index,
                sku,
                order_id,
            });
        };
        let taken: i32 = returned
            .iter()
            .filter(|line| line.sku == sku)
            .map(|line| line.quantity)
            .sum();
        let left = line.quantity - taken;
        if quantity > left {
            return Err(ReturnError::TooMany {
                index,
                sku,
                asked: quantity,
                left: left.max(0),
                bought: line.quantity,
            });
        }
        // At most the order's own line, whose total was checked when it was placed.
        refund_cents += i64::from(quantity) * line.unit_price_cents;
        lines.push(Item { sku, quantity });
    }
    Ok(Returnable {
        lines,
        refund_cents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bought() -> Vec<PricedItem> {
        vec![
            PricedItem {
                sku: "TEA-GREEN".into(),
                quantity: 3,
                unit_price_cents: 799,
            },
            PricedItem {
                sku: "MUG".into(),
                quantity: 1,
                unit_price_cents: 1200,
            },
        ]
    }

    fn asked(lines: &[(&str, i32)]) -> Vec<(String, i32)> {
        lines
            .iter()
            .map(|(sku, q)| ((*sku).to_owned(), *q))
            .collect()
    }

    #[test]
    fn lines_bought_are_refunded_at_the_price_paid() {
        let order = Uuid::now_v7();
        let back = returnable(
            order,
            &bought(),
            &[],
            &asked(&[("TEA-GREEN", 2), ("MUG", 1)]),
        );
        assert_eq!(back.unwrap().refund_cents, 2 * 799 + 1200);
    }

    #[test]
    fn more_than_was_bought_across_returns_is_refused_naming_the_line() {
        let order = Uuid::now_v7();
        let earlier = [Item {
            sku: "TEA-GREEN".into(),
            quantity: 2,
        }];
        let error = returnable(
            order,
            &bought(),
            &earlier,
            &asked(&[("MUG", 1), ("TEA-GREEN", 2)]),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "lines[1].quantity: 2 of TEA-GREEN asked back, but 1 of the 3 bought are left to return"
        );
        let all_back = returnable(order, &bought(), &earlier, &asked(&[("TEA-GREEN", 1)]));
        assert_eq!(all_back.unwrap().refund_cents, 799);
    }

    #[test]
    fn unknown_repeated_empty_or_out_of_range_lines_are_refused() {
        let order = Uuid::now_v7();
        let refused = |lines: &[(&str, i32)]| {
            returnable(order, &bought(), &[], &asked(lines))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&[("TEA-BLACK", 1)]),
            format!("lines[0].sku: order {order} did not buy TEA-BLACK")
        );
        assert!(refused(&[("MUG", 1), ("MUG", 1)]).starts_with("lines[1].sku: MUG is named twice"));
        assert!(refused(&[]).starts_with("lines: a return needs"));
        assert!(refused(&[("MUG", 0)]).starts_with("lines[0].quantity: 0 is not between"));
    }

    #[test]
    fn a_repeat_is_the_same_lines_in_any_order_and_nothing_else() {
        let stored = vec![
            Item {
                sku: "TEA-GREEN".into(),
                quantity: 2,
            },
            Item {
                sku: "MUG".into(),
                quantity: 1,
            },
        ];
        assert!(same_lines(&stored, &asked(&[("MUG", 1), ("TEA-GREEN", 2)])));
        assert!(!same_lines(
            &stored,
            &asked(&[("MUG", 1), ("TEA-GREEN", 1)])
        ));
        assert!(!same_lines(&stored, &asked(&[("MUG", 1)])));
        assert!(!same_lines(
            &stored,
            &asked(&[("MUG", 1), ("TEA-GREEN", 2), ("MUG", 1)])
        ));
    }
}
