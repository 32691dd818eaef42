//! DESIGN.md's invariants over the end state of a run, one function each. `check::report`
//! reads the state from the services (typed here, from their JSON) and [`all`] judges it.
//! Judging apart from reading lets a unit test feed each invariant a broken state: the
//! report is the oracle of the demo and of the cluster, replicas and concurrency tests, and
//! one that always said "ok" would leave them all green.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load::Placed;
use super::outcome;
use super::queues::Strays;

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

const EVERY_ORDER_FINAL: &str = "every order is confirmed or cancelled";
const AS_PREDICTED: &str = "each order ended as its path predicts";
const MONEY: &str =
    "money captured minus refunded equals the totals of confirmed orders minus closed returns";
const STOCK: &str =
    "stock reserved equals the quantities of confirmed orders minus those of closed returns";
const EVERY_RETURN_FINAL: &str = "every return is closed or cancelled, as its customer chose";
const SHIPMENTS: &str = "a shipment exists only for confirmed orders, one each";
const NO_DEAD_LETTERS: &str = "no message lost or dead-lettered";
const NOTHING_UNROUTED: &str = "every event had a queue to go to";

/// An order as the orders service answers `GET /orders/{id}`: the fields read here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OrderView {
    pub(crate) id: String,
    /// `pending`, `confirmed` or `cancelled`.
    pub(crate) status: String,
    /// Why it was cancelled (`payment-declined`); none otherwise.
    pub(crate) reason: Option<String>,
    pub(crate) total_cents: i64,
    pub(crate) items: Vec<ItemView>,
    /// Placed to final, in milliseconds; none while pending.
    pub(crate) latency_ms: Option<f64>,
    /// RFC 3339 in UTC, so comparing the text compares the times.
    pub(crate) created_at: Option<String>,
    pub(crate) finished_at: Option<String>,
}

/// A line of an order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ItemView {
    pub(crate) sku: String,
    pub(crate) quantity: i64,
}

/// A payment as the payments service lists it: a refund turns `captured` into `refunded`;
/// closed returns give back `returned_cents` of a captured one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PaymentView {
    pub(crate) status: String,
    pub(crate) amount_cents: i64,
    pub(crate) returned_cents: i64,
}

/// A return as the orders service answers `GET /returns/{id}`: the fields read here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ReturnView {
    pub(crate) id: String,
    /// `pending`, `closed` or `cancelled`.
    pub(crate) status: String,
    pub(crate) reason: Option<String>,
    pub(crate) refund_cents: i64,
    pub(crate) lines: Vec<ItemView>,
}

/// A shipment as the shipping service lists it: `scheduled` or `cancelled`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ShipmentView {
    pub(crate) status: String,
}

/// An order as placed, and what each service says about it.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) placed: Placed,
    pub(crate) order: OrderView,
    pub(crate) payments: Vec<PaymentView>,
    pub(crate) shipments: Vec<ShipmentView>,
    /// Inventory's reservation for it (`reserved`, `released`); none when it has none.
    pub(crate) reservation: Option<String>,
    /// The return its customer asked for, as it ended; none when none was asked.
    pub(crate) returned: Option<ReturnView>,
}

impl Observed {
    /// Cents captured and not refunded, nor given back by a return.
    fn captured(&self) -> i64 {
        self.payments
            .iter()
            .filter(|payment| payment.status == "captured")
            .map(|payment| payment.amount_cents - payment.returned_cents)
            .sum()
    }

    /// The return of this order that closed, if any.
    fn closed_return(&self) -> Option<&ReturnView> {
        self.returned
            .as_ref()
            .filter(|back| back.status == "closed")
    }

    /// What the order keeps: its total less a closed return's refund.
    fn kept_cents(&self) -> i64 {
        self.order.total_cents - self.closed_return().map_or(0, |back| back.refund_cents)
    }

    fn scheduled_shipments(&self) -> usize {
        self.shipments
            .iter()
            .filter(|shipment| shipment.status == "scheduled")
            .count()
    }
}

/// What the services say once a run has settled.
#[derive(Debug, Clone)]
pub(crate) struct RunState {
    /// Every order of the run, in the order placed.
    pub(crate) orders: Vec<Observed>,
    /// Each product of the run and the units inventory holds reserved for it.
    pub(crate) reserved: Vec<(String, i64)>,
    /// Dead letters and unrouted events that arrived during the run.
    pub(crate) strays: Strays,
}

/// Every invariant, in the order `conveyor demo` prints them.
pub(crate) fn all(state: &RunState) -> Vec<Invariant> {
    vec![
        every_order_final(&state.orders),
        each_order_ended_as_predicted(&state.orders),
        money_balances(&state.orders),
        stock_matches(&state.orders, &state.reserved),
        shipments_match(&state.orders),
        every_return_final(&state.orders),
        no_dead_letters(state.strays.dead_letters),
        nothing_unrouted(state.strays.unrouted),
    ]
}

/// The invariant `name`: held when nothing failed, else the count and the first five.
fn invariant(name: &'static str, failures: &[String], ok_detail: String) -> Invariant {
    Invariant {
        name,
        ok: failures.is_empty(),
        detail: if failures.is_empty() {
            ok_detail
        } else {
            let shown: Vec<_> = failures.iter().take(5).cloned().collect();
            format!("{} failures, e.g. {}", failures.len(), shown.join("; "))
        },
    }
}

/// No order is left pending (or in a state the saga does not know).
fn every_order_final(orders: &[Observed]) -> Invariant {
    let failures: Vec<String> = orders
        .iter()
        .filter(|seen| !matches!(seen.order.status.as_str(), "confirmed" | "cancelled"))
        .map(|seen| format!("order {} is {}", seen.order.id, seen.order.status))
        .collect();
    let ok = format!("{} orders, none pending", orders.len());
    invariant(EVERY_ORDER_FINAL, &failures, ok)
}

/// Each order ended as the path it was placed on predicts (see `outcome`).
fn each_order_ended_as_predicted(orders: &[Observed]) -> Invariant {
    let failures: Vec<String> = orders
        .iter()
        .filter_map(|seen| {
            outcome::unexpected_end(
                &seen.placed,
                &seen.order.status,
                seen.order.reason.as_deref(),
            )
        })
        .collect();
    let ok = format!(
        "{} orders: declined, undeliverable, sold out and cancelled where meant, the rest confirmed",
        orders.len()
    );
    invariant(AS_PREDICTED, &failures, ok)
}

/// A confirmed order has its total captured, a cancelled one nothing left captured, and
/// over the run captured minus refunded equals the confirmed totals (an order still
/// pending with money captured shows only there).
fn money_balances(orders: &[Observed]) -> Invariant {
    let mut failures = Vec::new();
    let (mut net_captured, mut confirmed_totals) = (0_i64, 0_i64);
    for seen in orders {
        let (id, kept, captured) = (&seen.order.id, seen.kept_cents(), seen.captured());
        net_captured += captured;
        match seen.order.status.as_str() {
            "confirmed" => {
                confirmed_totals += kept;
                if captured != kept {
                    failures.push(format!(
                        "confirmed order {id} has {captured} captured where it keeps {kept}"
                    ));
                }
            }
            "cancelled" if captured != 0 => {
                failures.push(format!(
                    "cancelled order {id} still has {captured} captured"
                ));
            }
            _ => {}
        }
    }
    if net_captured != confirmed_totals {
        failures.push(format!(
            "captured minus refunded is {net_captured}, confirmed totals are {confirmed_totals}"
        ));
    }
    let ok = format!("{net_captured} = {confirmed_totals} cents");
    invariant(MONEY, &failures, ok)
}

/// Each product's reserved units are the quantities its confirmed orders hold, a confirmed
/// order's reservation stands and a cancelled order's was released.
fn stock_matches(orders: &[Observed], reserved: &[(String, i64)]) -> Invariant {
    let mut held: BTreeMap<&str, i64> = BTreeMap::new();
    for seen in orders
        .iter()
        .filter(|seen| seen.order.status == "confirmed")
    {
        for item in &seen.order.items {
            *held.entry(item.sku.as_str()).or_default() += item.quantity;
        }
        for line in seen.closed_return().iter().flat_map(|back| &back.lines) {
            *held.entry(line.sku.as_str()).or_default() -= line.quantity;
        }
    }
    let mut failures: Vec<String> = reserved
        .iter()
        .filter_map(|(sku, units)| {
            let expected = held.get(sku.as_str()).copied().unwrap_or_default();
            (*units != expected)
                .then(|| format!("{sku}: {units} reserved, confirmed orders hold {expected}"))
        })
        .collect();
    failures.extend(orders.iter().filter_map(wrong_reservation));
    let ok = format!("{} products checked", reserved.len());
    invariant(STOCK, &failures, ok)
}

fn wrong_reservation(seen: &Observed) -> Option<String> {
    let id = &seen.order.id;
    match (seen.order.status.as_str(), seen.reservation.as_deref()) {
        ("confirmed", Some("reserved")) => None,
        ("confirmed", _) => Some(format!(
            "confirmed order {id} has reservation {:?}",
            seen.reservation
        )),
        ("cancelled", Some("reserved")) => {
            Some(format!("cancelled order {id} still holds its reservation"))
        }
        _ => None,
    }
}

/// A confirmed order has exactly one scheduled shipment, a cancelled one none.
fn shipments_match(orders: &[Observed]) -> Invariant {
    let mut failures = Vec::new();
    let mut confirmed = 0;
    for seen in orders {
        let (id, scheduled) = (&seen.order.id, seen.scheduled_shipments());
        match seen.order.status.as_str() {
            "confirmed" => {
                confirmed += 1;
                if scheduled != 1 {
                    failures.push(format!(
                        "confirmed order {id} has {scheduled} scheduled shipments"
                    ));
                }
            }
            "cancelled" if scheduled != 0 => {
                failures.push(format!("cancelled order {id} has a scheduled shipment"));
            }
            _ => {}
        }
    }
    let ok = format!("{confirmed} shipments for {confirmed} confirmed orders");
    invariant(SHIPMENTS, &failures, ok)
}

/// Every return ended: cancelled when its customer's cancel was accepted, closed otherwise
/// (the run's customers live where pickups go, within the return's deadline).
fn every_return_final(orders: &[Observed]) -> Invariant {
    let mut failures = Vec::new();
    let mut closed = 0;
    for seen in orders {
        let (Some(asked), Some(back)) = (&seen.placed.returned, &seen.returned) else {
            continue;
        };
        let expected = match asked.cancel_accepted {
            Some(true) => "cancelled",
            _ => "closed",
        };
        if back.status != expected {
            failures.push(format!(
                "return {} is {} ({:?}), where {expected} was expected",
                back.id, back.status, back.reason
            ));
        }
        closed += usize::from(back.status == "closed");
    }
    let asked = orders.iter().filter(|seen| seen.returned.is_some()).count();
    let ok = format!("{asked} returns: {closed} closed, the rest cancelled by their customers");
    invariant(EVERY_RETURN_FINAL, &failures, ok)
}

/// No event of the run ended in a dead-letter queue.
fn no_dead_letters(dead_letters: u64) -> Invariant {
    let failures = if dead_letters == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{dead_letters} new dead letters (see `conveyor dlq list`)"
        )]
    };
    invariant(NO_DEAD_LETTERS, &failures, "0 new dead letters".to_owned())
}

/// No event of the run matched no binding.
fn nothing_unrouted(unrouted: u64) -> Invariant {
    let failures = if unrouted == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{unrouted} new messages in conveyor.unrouted (see the book's Operate it: docs/src/operate.md)"
        )]
    };
    let ok = "0 new messages in conveyor.unrouted".to_owned();
    invariant(NOTHING_UNROUTED, &failures, ok)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scenario::Path;
    use crate::scenario::load::Returned;

    /// An order of `total` cents placed on `path`, still pending, that no service has acted
    /// on yet.
    fn order(id: &str, path: Path, cancel_accepted: Option<bool>, total: i64) -> Observed {
        Observed {
            placed: Placed {
                order_id: id.to_owned(),
                path,
                cancel_accepted,
                returned: None,
            },
            order: OrderView {
                id: id.to_owned(),
                status: "pending".to_owned(),
                total_cents: total,
                ..OrderView::default()
            },
            payments: Vec::new(),
            shipments: Vec::new(),
            reservation: None,
            returned: None,
        }
    }

    fn ended(mut seen: Observed, status: &str, reason: Option<&str>) -> Observed {
        seen.order.status = status.to_owned();
        seen.order.reason = reason.map(str::to_owned);
        seen
    }

    fn item(sku: &str, quantity: i64) -> ItemView {
        ItemView {
            sku: sku.to_owned(),
            quantity,
        }
    }

    fn payment(status: &str, amount_cents: i64) -> PaymentView {
        PaymentView {
            status: status.to_owned(),
            amount_cents,
            returned_cents: 0,
        }
    }

    fn shipment(status: &str) -> ShipmentView {
        ShipmentView {
            status: status.to_owned(),
        }
    }

    /// A run where everything holds: a confirmed order (2 × sku-a, paid, shipped, reserved),
    /// one declined for credit (nothing captured, reservation released) and one the
    /// customer cancelled after it was paid and shipped (refunded, shipment cancelled,
    /// reservation released). sku-b was ordered only by the cancelled ones.
    fn healthy() -> RunState {
        let mut confirmed = ended(order("o1", Path::Regular, None, 1000), "confirmed", None);
        confirmed.order.items = vec![item("sku-a", 2)];
        confirmed.payments = vec![payment("captured", 1000)];
        confirmed.shipments = vec![shipment("scheduled")];
        confirmed.reservation = Some("reserved".to_owned());
        let mut declined = ended(
            order("o2", Path::LowCredit, None, 300),
            "cancelled",
            Some("payment-declined"),
        );
        declined.order.items = vec![item("sku-b", 3)];
        declined.payments = vec![payment("declined", 300)];
        declined.reservation = Some("released".to_owned());
        let mut withdrawn = ended(
            order("o3", Path::CustomerCancel, Some(true), 500),
            "cancelled",
            Some("customer-cancelled"),
        );
        withdrawn.order.items = vec![item("sku-b", 1)];
        withdrawn.payments = vec![payment("refunded", 500)];
        withdrawn.shipments = vec![shipment("cancelled")];
        withdrawn.reservation = Some("released".to_owned());
        RunState {
            orders: vec![confirmed, declined, withdrawn, returned_in_part()],
            reserved: vec![("sku-a".to_owned(), 3), ("sku-b".to_owned(), 0)],
            strays: Strays::default(),
        }
    }

    /// A confirmed order of 2 × sku-a for 1000 of which the customer returned one (closed:
    /// 500 given back, the unit restocked).
    fn returned_in_part() -> Observed {
        let mut kept = ended(order("o4", Path::Regular, None, 1000), "confirmed", None);
        kept.order.items = vec![item("sku-a", 2)];
        kept.payments = vec![PaymentView {
            returned_cents: 500,
            ..payment("captured", 1000)
        }];
        kept.shipments = vec![shipment("scheduled")];
        kept.reservation = Some("reserved".to_owned());
        kept.placed.returned = Some(Returned {
            return_id: "r1".to_owned(),
            cancel_accepted: None,
        });
        kept.returned = Some(ReturnView {
            id: "r1".to_owned(),
            status: "closed".to_owned(),
            reason: None,
            refund_cents: 500,
            lines: vec![item("sku-a", 1)],
        });
        kept
    }

    /// The invariants that fail in `state`, by name, and each one's detail.
    fn failing(state: &RunState) -> BTreeMap<&'static str, String> {
        all(state)
            .into_iter()
            .filter(|invariant| !invariant.ok)
            .map(|invariant| (invariant.name, invariant.detail))
            .collect()
    }

    /// Exactly `name` fails in `state`, and its detail says `says`.
    fn only_fails(state: &RunState, name: &str, says: &str) {
        let failing = failing(state);
        assert_eq!(
            failing.keys().copied().collect::<Vec<_>>(),
            [name],
            "{failing:#?}"
        );
        assert!(
            failing[name].contains(says),
            "{name}: {:?} does not say {says:?}",
            failing[name]
        );
    }

    #[test]
    fn in_a_healthy_run_every_invariant_holds_and_says_what_it_counted() {
        let invariants = all(&healthy());
        let names: Vec<&str> = invariants.iter().map(|invariant| invariant.name).collect();
        assert_eq!(
            names,
            [
                EVERY_ORDER_FINAL,
                AS_PREDICTED,
                MONEY,
                STOCK,
                SHIPMENTS,
                EVERY_RETURN_FINAL,
                NO_DEAD_LETTERS,
                NOTHING_UNROUTED
            ]
        );
        let details: Vec<&str> = invariants
            .iter()
            .map(|invariant| invariant.detail.as_str())
            .collect();
        assert!(
            invariants.iter().all(|invariant| invariant.ok),
            "{details:#?}"
        );
        assert_eq!(
            details,
            [
                "4 orders, none pending",
                "4 orders: declined, undeliverable, sold out and cancelled where meant, the rest confirmed",
                "1500 = 1500 cents",
                "2 products checked",
                "2 shipments for 2 confirmed orders",
                "1 returns: 1 closed, the rest cancelled by their customers",
                "0 new dead letters",
                "0 new messages in conveyor.unrouted",
            ]
        );
    }

    /// A pending order is also one that did not end as predicted (no path predicts
    /// `pending`): the only pair of invariants that fail together by design.
    #[test]
    fn a_pending_order_is_named() {
        let mut state = healthy();
        state.orders.push(order("o5", Path::Regular, None, 700));
        let failing = failing(&state);
        assert_eq!(
            failing.keys().copied().collect::<Vec<_>>(),
            [AS_PREDICTED, EVERY_ORDER_FINAL],
            "{failing:#?}"
        );
        assert_eq!(
            failing[EVERY_ORDER_FINAL],
            "1 failures, e.g. order o5 is pending"
        );
        assert!(failing[AS_PREDICTED].contains("order o5 (Regular) ended pending"));
    }

    #[test]
    fn an_order_cancelled_against_its_path_is_named_with_what_was_expected() {
        let mut state = healthy();
        // o1 should have gone through; cancelled, it was compensated in full.
        let cancelled = &mut state.orders[0];
        cancelled.order.status = "cancelled".to_owned();
        cancelled.order.reason = Some("deadline-passed".to_owned());
        cancelled.payments = vec![payment("refunded", 1000)];
        cancelled.shipments = vec![shipment("cancelled")];
        cancelled.reservation = Some("released".to_owned());
        state.reserved[0].1 = 1;
        only_fails(
            &state,
            AS_PREDICTED,
            "order o1 (Regular) ended cancelled (deadline-passed), expected confirmed",
        );
    }

    #[test]
    fn a_double_capture_breaks_the_money() {
        let mut state = healthy();
        state.orders[0].payments.push(payment("captured", 1000));
        only_fails(
            &state,
            MONEY,
            "confirmed order o1 has 2000 captured where it keeps 1000",
        );
        assert!(
            failing(&state)[MONEY]
                .contains("captured minus refunded is 2500, confirmed totals are 1500")
        );
    }

    #[test]
    fn a_cancelled_order_still_charged_breaks_the_money() {
        let mut state = healthy();
        state.orders[2].payments = vec![payment("captured", 500)];
        only_fails(&state, MONEY, "cancelled order o3 still has 500 captured");
    }

    #[test]
    fn reserved_stock_that_confirmed_orders_do_not_hold_breaks_the_stock() {
        let mut state = healthy();
        state.reserved[1].1 = 1;
        only_fails(&state, STOCK, "sku-b: 1 reserved, confirmed orders hold 0");
    }

    #[test]
    fn a_cancelled_order_still_holding_its_reservation_breaks_the_stock() {
        let mut state = healthy();
        state.orders[2].reservation = Some("reserved".to_owned());
        only_fails(
            &state,
            STOCK,
            "cancelled order o3 still holds its reservation",
        );
    }

    #[test]
    fn a_confirmed_order_without_its_reservation_breaks_the_stock() {
        let mut state = healthy();
        state.orders[0].reservation = None;
        only_fails(&state, STOCK, "confirmed order o1 has reservation None");
    }

    #[test]
    fn a_closed_return_not_refunded_breaks_the_money_and_one_not_restocked_the_stock() {
        let mut state = healthy();
        state.orders[3].payments[0].returned_cents = 0;
        only_fails(
            &state,
            MONEY,
            "confirmed order o4 has 1000 captured where it keeps 500",
        );
        let mut state = healthy();
        state.reserved[0].1 = 4;
        only_fails(&state, STOCK, "sku-a: 4 reserved, confirmed orders hold 3");
    }

    #[test]
    fn a_return_that_did_not_end_as_its_customer_chose_is_named() {
        let mut state = healthy();
        if let Some(back) = state.orders[3].returned.as_mut() {
            back.status = "pending".to_owned();
        }
        // Still pending: nothing was given back or restocked, as the money and stock say.
        state.orders[3].payments[0].returned_cents = 0;
        state.reserved[0].1 = 4;
        only_fails(
            &state,
            EVERY_RETURN_FINAL,
            "return r1 is pending (None), where closed was expected",
        );
    }

    #[test]
    fn a_shipment_for_a_cancelled_order_is_named() {
        let mut state = healthy();
        state.orders[2].shipments = vec![shipment("scheduled")];
        only_fails(
            &state,
            SHIPMENTS,
            "cancelled order o3 has a scheduled shipment",
        );
    }

    #[test]
    fn a_confirmed_order_shipped_twice_is_named() {
        let mut state = healthy();
        state.orders[0].shipments.push(shipment("scheduled"));
        only_fails(
            &state,
            SHIPMENTS,
            "confirmed order o1 has 2 scheduled shipments",
        );
    }

    #[test]
    fn dead_letters_and_unrouted_events_are_counted() {
        let mut state = healthy();
        state.strays.dead_letters = 2;
        only_fails(&state, NO_DEAD_LETTERS, "2 new dead letters");
        let mut state = healthy();
        state.strays.unrouted = 5;
        only_fails(
            &state,
            NOTHING_UNROUTED,
            "5 new messages in conveyor.unrouted",
        );
    }

    #[test]
    fn a_failing_invariant_counts_every_failure_and_shows_five() {
        let failures: Vec<String> = (1..=7).map(|n| format!("f{n}")).collect();
        let checked = invariant(MONEY, &failures, "fine".to_owned());
        assert!(!checked.ok);
        assert_eq!(checked.detail, "7 failures, e.g. f1; f2; f3; f4; f5");
    }

    /// The views read the services' JSON as they write it: nulls where nothing happened
    /// yet, and fields the invariants do not need.
    #[test]
    fn the_views_read_what_the_services_answer() {
        let order: OrderView = serde_json::from_value(json!({
            "id": "o1", "user_id": "u1", "status": "pending", "reason": null, "detail": null,
            "items": [{ "sku": "sku-a", "quantity": 2, "unit_price_cents": 500 }],
            "total_cents": 1000, "currency": "EUR",
            "created_at": "2025-01-01T00:00:00Z", "finished_at": null, "latency_ms": null,
        }))
        .unwrap();
        assert_eq!(
            (order.status.as_str(), order.reason, order.latency_ms),
            ("pending", None, None)
        );
        assert_eq!(
            (order.items[0].sku.as_str(), order.items[0].quantity),
            ("sku-a", 2)
        );
        let payment: PaymentView = serde_json::from_value(json!({
            "id": "p1", "order_id": "o1", "status": "refunded", "amount_cents": 1000,
        }))
        .unwrap();
        assert_eq!(
            (payment.status.as_str(), payment.amount_cents),
            ("refunded", 1000)
        );
    }
}
