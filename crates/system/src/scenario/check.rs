//! Waiting for the flow to go quiet, then reading what the services' own APIs say about
//! the run, judging it by DESIGN.md's invariants (`invariants`), and the report of the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::api::Api;
use super::invariants::{
    self, Invariant, Observed, PaymentView, ReturnView, RunState, ShipmentView,
};
use super::load::Placed;
use super::queues::Strays;
use super::setup::Fixtures;

/// What a run did and whether the invariants held.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub placed: usize,
    pub confirmed: usize,
    pub cancelled: BTreeMap<String, usize>,
    pub customer_cancels_accepted: usize,
    pub customer_cancels_too_late: usize,
    /// Returns asked for, by how they ended (`closed`, `cancelled`).
    pub returns: BTreeMap<String, usize>,
    /// Compensations run: payments refunded, reservations released, shipments cancelled.
    pub compensations: BTreeMap<String, usize>,
    /// Saga latency, order placed to final state, in milliseconds.
    pub latency_ms: BTreeMap<String, f64>,
    /// Orders per second from the first placed to the last final.
    pub orders_per_second: f64,
    pub dead_letters: u64,
    /// Events this run sent that no queue was bound for.
    pub unrouted: u64,
    /// Requests a service answered "busy, try again" (503 with `Retry-After`) and were sent
    /// again: a sign that its HTTP slots (`<SERVICE>_HTTP_CONCURRENCY`) were all taken.
    pub busy_answers: usize,
    pub invariants: Vec<Invariant>,
}

impl Report {
    pub fn all_hold(&self) -> bool {
        self.invariants.iter().all(|invariant| invariant.ok)
    }

    /// Whether two readings saw the same outcome: nothing moved between them.
    pub(crate) fn same_state(&self, other: &Self) -> bool {
        let details = |report: &Self| -> Vec<String> {
            report
                .invariants
                .iter()
                .map(|invariant| invariant.detail.clone())
                .collect()
        };
        self.confirmed == other.confirmed
            && self.cancelled == other.cancelled
            && self.returns == other.returns
            && self.compensations == other.compensations
            && details(self) == details(other)
    }
}

/// Waits until no order of this run is pending.
///
/// # Errors
/// When some are still pending after `within`.
pub async fn wait_until_settled(
    api: &Api,
    fixtures: &Fixtures,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while any_pending(api, fixtures).await? {
        if Instant::now() >= deadline {
            let pending = pending_orders(api, fixtures).await?;
            anyhow::bail!("{pending} orders are still pending after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Waits until no return of this run is pending.
///
/// # Errors
/// When some are still pending after `within`.
pub async fn wait_until_returns_settled(
    api: &Api,
    placed: &[Placed],
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut pending: Vec<&str> = placed
        .iter()
        .filter_map(|order| order.returned.as_ref())
        .map(|back| back.return_id.as_str())
        .collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let back = api.get("orders", &format!("/returns/{id}")).await?;
            if back["status"] == "pending" {
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} returns are still pending after {within:?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Whether any order of this run's users is pending. One order per user at most crosses the
/// wire: with thousands of orders in flight, listing every pending one ten times a second
/// sends megabytes of JSON a second through the system being measured.
async fn any_pending(api: &Api, fixtures: &Fixtures) -> anyhow::Result<bool> {
    for user in fixtures.all_users() {
        let page = api
            .get(
                "orders",
                &format!("/orders?user_id={user}&status=pending&limit=1"),
            )
            .await?;
        if page["orders"]
            .as_array()
            .is_some_and(|orders| !orders.is_empty())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Orders of this run's users that are still pending.
///
/// # Errors
/// When the orders service cannot be read.
pub async fn pending_orders(api: &Api, fixtures: &Fixtures) -> anyhow::Result<usize> {
    let mut pending = 0;
    for user in fixtures.all_users() {
        pending += api
            .orders(&format!("user_id={user}&status=pending"))
            .await?
            .len();
    }
    Ok(pending)
}

/// Payments of an order, as `GET /payments?order_id=` answers.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct PaymentList {
    payments: Vec<PaymentView>,
}

/// Shipments of an order, as `GET /shipments?order_id=` answers.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ShipmentList {
    shipments: Vec<ShipmentView>,
}

/// An order's reservation, as `GET /reservations/{id}` answers.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ReservationView {
    status: String,
}

/// A product, as `GET /products/{sku}` answers: the units held for orders.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ProductView {
    reserved: i64,
}

/// `value` as `T`; `what` names it in the error.
fn typed<T: DeserializeOwned>(value: Value, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    serde_json::from_value(value).with_context(|| format!("cannot read {}", what()))
}

async fn observe(api: &Api, placed: &Placed) -> anyhow::Result<Observed> {
    let id = &placed.order_id;
    let order = api.get("orders", &format!("/orders/{id}")).await?;
    let payments = api
        .get("payments", &format!("/payments?order_id={id}"))
        .await?;
    let shipments = api
        .get("shipping", &format!("/shipments?order_id={id}"))
        .await?;
    let (status, reservation) = api
        .call(
            reqwest::Method::GET,
            "inventory",
            &format!("/reservations/{id}"),
            None,
            &[],
        )
        .await?;
    let reservation = if status.is_success() {
        let view: ReservationView = typed(reservation, || format!("the reservation of {id}"))?;
        Some(view.status)
    } else {
        None
    };
    let returned = match &placed.returned {
        Some(asked) => {
            let id = &asked.return_id;
            let back = api.get("orders", &format!("/returns/{id}")).await?;
            Some(typed::<ReturnView>(back, || format!("return {id}"))?)
        }
        None => None,
    };
    Ok(Observed {
        placed: placed.clone(),
        order: typed(order, || format!("order {id}"))?,
        payments: typed::<PaymentList>(payments, || format!("the payments of {id}"))?.payments,
        shipments: typed::<ShipmentList>(shipments, || format!("the shipments of {id}"))?.shipments,
        reservation,
        returned,
    })
}

/// Each product of the run and the units inventory holds reserved for it.
async fn reserved_stock(api: &Api, fixtures: &Fixtures) -> anyhow::Result<Vec<(String, i64)>> {
    let mut reserved = Vec::new();
    for sku in fixtures.all_products() {
        let product = api.get("inventory", &format!("/products/{sku}")).await?;
        let product: ProductView = typed(product, || format!("product {sku}"))?;
        reserved.push((sku, product.reserved));
    }
    Ok(reserved)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Reads every order's final state from the services and checks the invariants
/// ([`invariants::all`], one function each).
///
/// # Errors
/// When a service cannot be reached, or answers what cannot be read.
pub async fn report(
    api: &Api,
    fixtures: &Fixtures,
    placed: &[Placed],
    strays: Strays,
) -> anyhow::Result<Report> {
    let orders: Vec<Observed> = futures_util::stream::iter(placed)
        .map(|order| observe(api, order))
        .buffered(16)
        .try_collect()
        .await?;
    let state = RunState {
        orders,
        reserved: reserved_stock(api, fixtures).await?,
        strays,
    };
    let invariants = invariants::all(&state);
    Ok(summary(&state, placed, api.busy_answers(), invariants))
}

/// What the run did, beside whether the invariants held.
fn summary(
    state: &RunState,
    placed: &[Placed],
    busy_answers: usize,
    invariants: Vec<Invariant>,
) -> Report {
    let orders = &state.orders;
    let mut cancelled: BTreeMap<String, usize> = BTreeMap::new();
    for seen in orders
        .iter()
        .filter(|seen| seen.order.status == "cancelled")
    {
        let reason = seen.order.reason.as_deref().unwrap_or("unknown");
        *cancelled.entry(reason.to_owned()).or_default() += 1;
    }
    let cancels = |accepted: bool| {
        placed
            .iter()
            .filter(|order| order.cancel_accepted == Some(accepted))
            .count()
    };
    Report {
        placed: placed.len(),
        confirmed: orders
            .iter()
            .filter(|seen| seen.order.status == "confirmed")
            .count(),
        cancelled,
        customer_cancels_accepted: cancels(true),
        customer_cancels_too_late: cancels(false),
        returns: returns_by_end(orders),
        compensations: compensations(orders),
        latency_ms: latency_percentiles(orders),
        orders_per_second: orders.len() as f64 / span_seconds(orders),
        dead_letters: state.strays.dead_letters,
        unrouted: state.strays.unrouted,
        busy_answers,
        invariants,
    }
}

/// Returns asked for, by how they ended.
fn returns_by_end(orders: &[Observed]) -> BTreeMap<String, usize> {
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    for back in orders.iter().filter_map(|seen| seen.returned.as_ref()) {
        *ends.entry(back.status.clone()).or_default() += 1;
    }
    ends
}

/// Compensations run: payments refunded, shipments cancelled, reservations released (no
/// entry at all when there was no order).
fn compensations(orders: &[Observed]) -> BTreeMap<String, usize> {
    if orders.is_empty() {
        return BTreeMap::new();
    }
    let refunded = orders
        .iter()
        .flat_map(|seen| &seen.payments)
        .filter(|payment| payment.status == "refunded")
        .count();
    let cancelled = orders
        .iter()
        .flat_map(|seen| &seen.shipments)
        .filter(|shipment| shipment.status == "cancelled")
        .count();
    let released = orders
        .iter()
        .filter(|seen| seen.reservation.as_deref() == Some("released"))
        .count();
    BTreeMap::from([
        ("payments refunded".to_owned(), refunded),
        ("shipments cancelled".to_owned(), cancelled),
        ("reservations released".to_owned(), released),
    ])
}

/// Saga latency percentiles, order placed to final, in milliseconds.
fn latency_percentiles(orders: &[Observed]) -> BTreeMap<String, f64> {
    let mut latencies: Vec<f64> = orders
        .iter()
        .filter_map(|seen| seen.order.latency_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    BTreeMap::from([
        ("p50".to_owned(), percentile(&latencies, 0.50)),
        ("p95".to_owned(), percentile(&latencies, 0.95)),
        ("p99".to_owned(), percentile(&latencies, 0.99)),
    ])
}

/// Seconds from the first order placed to the last one final; never zero (it divides).
fn span_seconds(orders: &[Observed]) -> f64 {
    let first = orders
        .iter()
        .filter_map(|seen| seen.order.created_at.as_deref())
        .min();
    let last = orders
        .iter()
        .filter_map(|seen| seen.order.finished_at.as_deref())
        .max();
    match (first, last) {
        (Some(first), Some(last)) => {
            (chrono_seconds(last) - chrono_seconds(first)).max(f64::EPSILON)
        }
        _ => f64::EPSILON,
    }
}

/// Seconds since the epoch of an RFC 3339 time, as the orders API writes it.
fn chrono_seconds(text: &str) -> f64 {
    text.parse::<chrono::DateTime<chrono::Utc>>()
        .map(|at| at.timestamp_micros() as f64 / 1e6)
        .unwrap_or_default()
}
