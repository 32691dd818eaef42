//! Waiting for the flow to go quiet, then DESIGN.md's invariants checked against the
//! services' own APIs, and the report of the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;

use super::api::Api;
use super::load::Placed;
use super::outcome;
use super::setup::Fixtures;

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What a run did and whether the invariants held.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub placed: usize,
    pub confirmed: usize,
    pub cancelled: BTreeMap<String, usize>,
    pub customer_cancels_accepted: usize,
    pub customer_cancels_too_late: usize,
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

/// Messages that left the flow: dead letters, and events no queue was bound for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strays {
    pub dead_letters: u64,
    pub unrouted: u64,
}

impl Strays {
    /// What came after `before` was counted.
    pub fn since(self, before: Self) -> Self {
        Self {
            dead_letters: self.dead_letters.saturating_sub(before.dead_letters),
            unrouted: self.unrouted.saturating_sub(before.unrouted),
        }
    }
}

/// The dead letters of every service and the messages in `conveyor.unrouted`, now.
///
/// # Errors
/// When the broker cannot be reached.
pub async fn strays(amqp: &conveyor::AmqpConfig) -> anyhow::Result<Strays> {
    let connection = amqp.connect().await?;
    let dead_letters = dead_letters_on(&connection).await?;
    let unrouted = waiting(&connection, &conveyor::Names::default().unrouted()).await?;
    let _ = connection.close(200, "counted".into()).await;
    Ok(Strays {
        dead_letters,
        unrouted,
    })
}

/// Messages waiting in every service's dead-letter queue.
///
/// # Errors
/// When the broker cannot be reached.
pub async fn dead_letters(amqp: &conveyor::AmqpConfig) -> anyhow::Result<u64> {
    let connection = amqp.connect().await?;
    let total = dead_letters_on(&connection).await?;
    let _ = connection.close(200, "counted".into()).await;
    Ok(total)
}

/// The dead-letter queues the topology declares: only services that consume have one
/// (users does not), and asking for a queue that does not exist makes the broker close the
/// channel, which lapin logs as an error.
async fn dead_letters_on(connection: &lapin::Connection) -> anyhow::Result<u64> {
    let topology = crate::all_topology(&conveyor::Names::default())?;
    let mut total = 0;
    for queue in topology
        .queue_names()
        .filter(|queue| is_dead_letter_queue(queue))
    {
        total += waiting(connection, queue).await?;
    }
    Ok(total)
}

fn is_dead_letter_queue(queue: &str) -> bool {
    queue.ends_with(".dlq")
}

/// Messages ready in `queue`; 0 when it does not exist.
async fn waiting(connection: &lapin::Connection, queue: &str) -> anyhow::Result<u64> {
    let channel = connection.create_channel().await?;
    // A passive declare of a missing queue closes the channel; nothing to close then.
    let Ok(declared) = conveyor::declare_passive(&channel, queue).await else {
        return Ok(0);
    };
    let _ = channel.close(200, "counted".into()).await;
    Ok(u64::from(declared.message_count()))
}

/// Messages waiting in the services' queues and retry tiers (dead letters left out): work
/// still to do.
///
/// # Errors
/// When the broker cannot be reached.
pub(crate) async fn queued(amqp: &conveyor::AmqpConfig) -> anyhow::Result<u64> {
    let names = conveyor::Names::default();
    let topology = crate::all_topology(&names)?;
    let connection = amqp.connect().await?;
    let mut total = 0;
    for queue in topology.queue_names() {
        // Not work in flight: failures, strays and the operators' audit log.
        if is_dead_letter_queue(queue)
            || queue == names.unrouted()
            || queue == names.dead_letter_audit_queue()
        {
            continue;
        }
        total += waiting(&connection, queue).await?;
    }
    let _ = connection.close(200, "counted".into()).await;
    Ok(total)
}

/// An order with what each service says about it.
struct Observed {
    order: Value,
    payments: Vec<Value>,
    shipments: Vec<Value>,
    reservation: Option<String>,
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
    Ok(Observed {
        order,
        payments: payments["payments"].as_array().cloned().unwrap_or_default(),
        shipments: shipments["shipments"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        reservation: status.is_success().then(|| {
            reservation["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }),
    })
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * fraction).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

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

/// Reads every order's final state from the services and checks the invariants.
///
/// # Errors
/// When a service cannot be reached.
pub async fn report(
    api: &Api,
    fixtures: &Fixtures,
    placed: &[Placed],
    strays: Strays,
) -> anyhow::Result<Report> {
    let Strays {
        dead_letters,
        unrouted,
    } = strays;
    let observed: Vec<Observed> = futures_util::stream::iter(placed)
        .map(|order| observe(api, order))
        .buffered(16)
        .try_collect()
        .await?;
    let mut confirmed = 0;
    let mut cancelled: BTreeMap<String, usize> = BTreeMap::new();
    let mut compensations: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let (mut unfinished, mut money, mut shipping, mut reservations) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut confirmed_totals = 0_i64;
    let mut net_captured = 0_i64;
    let mut confirmed_quantities: BTreeMap<String, i64> = BTreeMap::new();
    let (mut first_created, mut last_finished) = (None::<String>, None::<String>);
    let mut wrong_ends = Vec::new();
    for (seen, placed) in observed.iter().zip(placed) {
        let order = &seen.order;
        let id = order["id"].as_str().unwrap_or_default();
        let status = order["status"].as_str().unwrap_or_default();
        let total = order["total_cents"].as_i64().unwrap_or_default();
        wrong_ends.extend(outcome::unexpected_end(
            placed,
            status,
            order["reason"].as_str(),
        ));
        if let Some(latency) = order["latency_ms"].as_f64() {
            latencies.push(latency);
        }
        if let Some(created) = order["created_at"].as_str() {
            first_created = Some(
                first_created.map_or(created.to_owned(), |first| first.min(created.to_owned())),
            );
        }
        if let Some(finished) = order["finished_at"].as_str() {
            last_finished = Some(
                last_finished.map_or(finished.to_owned(), |last| last.max(finished.to_owned())),
            );
        }
        let captured: i64 = seen
            .payments
            .iter()
            .filter(|p| p["status"] == "captured")
            .map(|p| p["amount_cents"].as_i64().unwrap_or_default())
            .sum();
        net_captured += captured;
        let scheduled = seen
            .shipments
            .iter()
            .filter(|s| s["status"] == "scheduled")
            .count();
        *compensations.entry("payments refunded".into()).or_default() += seen
            .payments
            .iter()
            .filter(|p| p["status"] == "refunded")
            .count();
        *compensations
            .entry("shipments cancelled".into())
            .or_default() += seen
            .shipments
            .iter()
            .filter(|s| s["status"] == "cancelled")
            .count();
        *compensations
            .entry("reservations released".into())
            .or_default() += usize::from(seen.reservation.as_deref() == Some("released"));
        match status {
            "confirmed" => {
                confirmed += 1;
                confirmed_totals += total;
                if captured != total {
                    money.push(format!(
                        "confirmed order {id} has {captured} captured for a total of {total}"
                    ));
                }
                if scheduled != 1 {
                    shipping.push(format!(
                        "confirmed order {id} has {scheduled} scheduled shipments"
                    ));
                }
                if seen.reservation.as_deref() != Some("reserved") {
                    reservations.push(format!(
                        "confirmed order {id} has reservation {:?}",
                        seen.reservation
                    ));
                }
                for item in order["items"].as_array().into_iter().flatten() {
                    let sku = item["sku"].as_str().unwrap_or_default().to_owned();
                    *confirmed_quantities.entry(sku).or_default() +=
                        item["quantity"].as_i64().unwrap_or_default();
                }
            }
            "cancelled" => {
                let reason = order["reason"].as_str().unwrap_or("unknown").to_owned();
                *cancelled.entry(reason).or_default() += 1;
                if captured != 0 {
                    money.push(format!(
                        "cancelled order {id} still has {captured} captured"
                    ));
                }
                if scheduled != 0 {
                    shipping.push(format!("cancelled order {id} has a scheduled shipment"));
                }
                if seen.reservation.as_deref() == Some("reserved") {
                    reservations.push(format!("cancelled order {id} still holds its reservation"));
                }
            }
            other => unfinished.push(format!("order {id} is {other}")),
        }
    }
    let mut stock = Vec::new();
    for sku in fixtures.all_products() {
        let product = api.get("inventory", &format!("/products/{sku}")).await?;
        let reserved = product["reserved"].as_i64().unwrap_or_default();
        let expected = confirmed_quantities.get(&sku).copied().unwrap_or_default();
        if reserved != expected {
            stock.push(format!(
                "{sku}: {reserved} reserved, confirmed orders hold {expected}"
            ));
        }
    }
    stock.extend(reservations);
    latencies.sort_by(f64::total_cmp);
    let latency_ms = BTreeMap::from([
        ("p50".to_owned(), percentile(&latencies, 0.50)),
        ("p95".to_owned(), percentile(&latencies, 0.95)),
        ("p99".to_owned(), percentile(&latencies, 0.99)),
    ]);
    let span_seconds = match (first_created, last_finished) {
        (Some(first), Some(last)) => {
            let parse = |text: &str| chrono_seconds(text);
            (parse(&last) - parse(&first)).max(f64::EPSILON)
        }
        _ => f64::EPSILON,
    };
    if net_captured != confirmed_totals {
        money.push(format!(
            "captured minus refunded is {net_captured}, confirmed totals are {confirmed_totals}"
        ));
    }
    let dead = if dead_letters == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{dead_letters} new dead letters (see `conveyor dlq list`)"
        )]
    };
    let invariants = vec![
        invariant(
            "every order is confirmed or cancelled",
            &unfinished,
            format!("{} orders, none pending", observed.len()),
        ),
        invariant(
            "each order ended as its path predicts",
            &wrong_ends,
            format!(
                "{} orders: declined, undeliverable, sold out and cancelled where meant, the rest confirmed",
                observed.len()
            ),
        ),
        invariant(
            "money captured minus refunded equals the totals of confirmed orders",
            &money,
            format!("{net_captured} = {confirmed_totals} cents"),
        ),
        invariant(
            "stock reserved equals the quantities of confirmed orders",
            &stock,
            format!("{} products checked", fixtures.all_products().len()),
        ),
        invariant(
            "a shipment exists only for confirmed orders, one each",
            &shipping,
            format!("{confirmed} shipments for {confirmed} confirmed orders"),
        ),
        invariant(
            "no message lost or dead-lettered",
            &dead,
            "0 new dead letters".to_owned(),
        ),
        invariant(
            "every event had a queue to go to",
            &if unrouted == 0 {
                Vec::new()
            } else {
                vec![format!(
                    "{unrouted} new messages in conveyor.unrouted (see the README's Operators section)"
                )]
            },
            "0 new messages in conveyor.unrouted".to_owned(),
        ),
    ];
    let accepted = placed
        .iter()
        .filter(|p| p.cancel_accepted == Some(true))
        .count();
    let too_late = placed
        .iter()
        .filter(|p| p.cancel_accepted == Some(false))
        .count();
    Ok(Report {
        placed: placed.len(),
        confirmed,
        cancelled,
        customer_cancels_accepted: accepted,
        customer_cancels_too_late: too_late,
        compensations,
        latency_ms,
        orders_per_second: observed.len() as f64 / span_seconds,
        dead_letters,
        unrouted,
        busy_answers: api.busy_answers(),
        invariants,
    })
}

/// Seconds since the epoch of an RFC 3339 time, as the orders API writes it.
fn chrono_seconds(text: &str) -> f64 {
    text.parse::<chrono::DateTime<chrono::Utc>>()
        .map(|at| at.timestamp_micros() as f64 / 1e6)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_queues_counted_are_those_of_the_consuming_services() {
        let names = conveyor::Names::default();
        let topology = crate::all_topology(&names).unwrap();
        let mut counted: Vec<String> = topology
            .queue_names()
            .filter(|queue| is_dead_letter_queue(queue))
            .map(str::to_owned)
            .collect();
        let mut expected: Vec<String> = ["inventory", "orders", "payments", "shipping"]
            .iter()
            .map(|service| names.dead_letter_queue(service))
            .collect();
        counted.sort();
        expected.sort();
        assert_eq!(counted, expected);
    }
}
