//! The end each order's path predicts: the scenario knows why it placed each order (a user
//! without credit, a country shipping does not serve, a customer who cancelled in time), so
//! it can tell a wrongly cancelled or wrongly confirmed order from a right one.

use super::load::{Path, Placed};

/// An order's end: its status and, when cancelled, the reason.
type End<'a> = (&'a str, Option<&'a str>);

const CONFIRMED: End<'static> = ("confirmed", None);

/// The ends `placed`'s path allows.
fn expected(placed: &Placed) -> &'static [End<'static>] {
    match (placed.path, placed.cancel_accepted) {
        (Path::Regular, _) | (Path::CustomerCancel, Some(false)) => &[CONFIRMED],
        (Path::CustomerCancel, _) => &[("cancelled", Some("customer-cancelled"))],
        (Path::LowCredit, _) => &[("cancelled", Some("payment-declined"))],
        (Path::FarAway, _) => &[("cancelled", Some("shipment-failed"))],
        // The scarce product's stock serves the first few; the rest are refused.
        (Path::Scarce, _) => &[CONFIRMED, ("cancelled", Some("inventory-rejected"))],
    }
}

/// `None` when the order ended as its path predicts; otherwise what went wrong.
pub(crate) fn unexpected_end(
    placed: &Placed,
    status: &str,
    reason: Option<&str>,
) -> Option<String> {
    let allowed = expected(placed);
    if allowed.contains(&(status, reason)) {
        return None;
    }
    let wanted: Vec<String> = allowed.iter().copied().map(describe).collect();
    Some(format!(
        "order {} ({:?}) ended {}, expected {}",
        placed.order_id,
        placed.path,
        describe((status, reason)),
        wanted.join(" or ")
    ))
}

/// `cancelled (payment-declined)`, or the status alone.
fn describe((status, reason): End<'_>) -> String {
    match reason {
        Some(reason) => format!("{status} ({reason})"),
        None => status.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(path: Path, cancel_accepted: Option<bool>) -> Placed {
        Placed {
            order_id: "o1".to_owned(),
            path,
            cancel_accepted,
            returned: None,
        }
    }

    #[test]
    fn each_path_allows_only_its_own_ends() {
        let cases = [
            (placed(Path::Regular, None), CONFIRMED, true),
            (
                placed(Path::Regular, None),
                ("cancelled", Some("deadline-passed")),
                false,
            ),
            (
                placed(Path::LowCredit, None),
                ("cancelled", Some("payment-declined")),
                true,
            ),
            (placed(Path::LowCredit, None), CONFIRMED, false),
            (
                placed(Path::FarAway, None),
                ("cancelled", Some("shipment-failed")),
                true,
            ),
            (
                placed(Path::FarAway, None),
                ("cancelled", Some("payment-declined")),
                false,
            ),
            (placed(Path::Scarce, None), CONFIRMED, true),
            (
                placed(Path::Scarce, None),
                ("cancelled", Some("inventory-rejected")),
                true,
            ),
            (
                placed(Path::Scarce, None),
                ("cancelled", Some("payment-declined")),
                false,
            ),
            (
                placed(Path::CustomerCancel, Some(true)),
                ("cancelled", Some("customer-cancelled")),
                true,
            ),
            (placed(Path::CustomerCancel, Some(true)), CONFIRMED, false),
            (placed(Path::CustomerCancel, Some(false)), CONFIRMED, true),
            (
                placed(Path::CustomerCancel, Some(false)),
                ("cancelled", Some("customer-cancelled")),
                false,
            ),
            (placed(Path::Regular, None), ("pending", None), false),
        ];
        for (order, (status, reason), fine) in cases {
            let verdict = unexpected_end(&order, status, reason);
            assert_eq!(
                verdict.is_none(),
                fine,
                "{:?} ended {status} {reason:?}: {verdict:?}",
                order.path
            );
        }
    }

    #[test]
    fn a_wrong_end_names_the_order_what_happened_and_what_was_expected() {
        let verdict = unexpected_end(
            &placed(Path::Regular, None),
            "cancelled",
            Some("deadline-passed"),
        );
        assert_eq!(
            verdict.as_deref(),
            Some("order o1 (Regular) ended cancelled (deadline-passed), expected confirmed")
        );
    }
}
