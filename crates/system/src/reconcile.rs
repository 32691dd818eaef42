//! Reconciliation: every finished order's status against what payments, inventory and
//! shipping hold for it, read from the services' own databases. The saga's compensation is
//! event-driven; when one of its events is dead-lettered and nobody replays it, the books
//! disagree quietly (a cancelled order whose payment stays captured). This finds those.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Discrepancies a report keeps; the rest are counted.
const KEPT: usize = 10_000;
/// Orders whose counterparts are read in one query per service.
const CHUNK: usize = 2_000;

/// Which finished orders to look at.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Orders finished less than this long ago are left out: their compensation may still
    /// be on its way.
    pub settled_for: Duration,
    /// Orders finished longer ago than this are left out.
    pub since: Duration,
}

/// The databases of the services whose records are compared.
pub struct Databases {
    pub orders: PgPool,
    pub payments: PgPool,
    pub inventory: PgPool,
    pub shipping: PgPool,
}

/// One way an order and a service's record of it disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub order_id: Uuid,
    pub status: String,
    pub finished_at: DateTime<Utc>,
    /// The service whose record disagrees.
    pub service: &'static str,
    pub problem: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ReconcileReport {
    /// Finished orders compared.
    pub checked: u64,
    /// Discrepancies found, all of them counted.
    pub found: u64,
    /// The first 10,000 of them.
    pub discrepancies: Vec<Discrepancy>,
}

#[derive(Debug, sqlx::FromRow)]
struct FinishedOrder {
    id: Uuid,
    status: String,
    total_cents: i64,
    currency: String,
    finished_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Payment {
    order_id: Uuid,
    status: String,
    amount_cents: i64,
    currency: String,
}

/// What the other services hold for one order.
#[derive(Debug, Default)]
struct Counterparts<'a> {
    payment: Option<&'a Payment>,
    reservation: Option<&'a str>,
    shipment: Option<&'a str>,
}

/// How many finished orders `options` selects, for a progress bar.
///
/// # Errors
/// When the orders database cannot be read.
pub async fn count(databases: &Databases, options: ReconcileOptions) -> sqlx::Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE status <> 'pending'
           AND finished_at >= now() - $1 AND finished_at < now() - $2",
    )
    .bind(options.since)
    .bind(options.settled_for)
    .fetch_one(&databases.orders)
    .await?;
    Ok(u64::try_from(count).unwrap_or_default())
}

/// Compares each selected order with the other services' records; `progress` hears how
/// many orders were compared so far. Orders are streamed, so memory does not grow with
/// their number.
///
/// # Errors
/// When a database cannot be read.
pub async fn reconcile(
    databases: &Databases,
    options: ReconcileOptions,
    mut progress: impl FnMut(u64),
) -> sqlx::Result<ReconcileReport> {
    let mut report = ReconcileReport::default();
    let mut orders = sqlx::query_as::<_, FinishedOrder>(
        "SELECT id, status, total_cents, currency, finished_at FROM orders
         WHERE status <> 'pending' AND finished_at >= now() - $1 AND finished_at < now() - $2",
    )
    .bind(options.since)
    .bind(options.settled_for)
    .fetch(&databases.orders)
    .try_chunks(CHUNK);
    while let Some(chunk) = orders.next().await {
        let chunk = chunk.map_err(|error| error.1)?;
        let ids: Vec<Uuid> = chunk.iter().map(|order| order.id).collect();
        let (payments, reservations, shipments) = tokio::try_join!(
            payments_of(&databases.payments, &ids),
            statuses_of(
                &databases.inventory,
                "SELECT order_id, status FROM reservations WHERE order_id = ANY($1)",
                &ids
            ),
            statuses_of(
                &databases.shipping,
                "SELECT order_id, status FROM shipments WHERE order_id = ANY($1)",
                &ids
            ),
        )?;
        for order in &chunk {
            let counterparts = Counterparts {
                payment: payments.get(&order.id),
                reservation: reservations.get(&order.id).map(String::as_str),
                shipment: shipments.get(&order.id).map(String::as_str),
            };
            for (service, problem) in judge(order, &counterparts) {
                report.found += 1;
                if report.discrepancies.len() < KEPT {
                    report.discrepancies.push(Discrepancy {
                        order_id: order.id,
                        status: order.status.clone(),
                        finished_at: order.finished_at,
                        service,
                        problem,
                    });
                }
            }
        }
        report.checked += chunk.len() as u64;
        progress(report.checked);
    }
    Ok(report)
}

async fn payments_of(pool: &PgPool, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, Payment>> {
    sqlx::query_as::<_, Payment>(
        "SELECT order_id, status, amount_cents, currency FROM payments WHERE order_id = ANY($1)",
    )
    .bind(ids)
    .fetch(pool)
    .map_ok(|payment| (payment.order_id, payment))
    .try_collect()
    .await
}

async fn statuses_of(
    pool: &PgPool,
    query: &'static str,
    ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, String>> {
    sqlx::query_as::<_, (Uuid, String)>(query)
        .bind(ids)
        .fetch(pool)
        .try_collect()
        .await
}

/// DESIGN.md's invariants for one finished order: a confirmed order was paid in full, holds
/// its stock and has a scheduled shipment; a cancelled one holds no money, stock or
/// shipment.
fn judge(order: &FinishedOrder, found: &Counterparts<'_>) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    match order.status.as_str() {
        "confirmed" => {
            match found.payment {
                None => problems.push(("payments", "confirmed, but no payment".to_owned())),
                Some(payment) if payment.status != "captured" => problems.push((
                    "payments",
                    format!("confirmed, but its payment is {}", payment.status),
                )),
                Some(payment)
                    if payment.amount_cents != order.total_cents
                        || payment.currency != order.currency =>
                {
                    problems.push((
                        "payments",
                        format!(
                            "confirmed at {} {}, but {} {} was captured",
                            order.total_cents,
                            order.currency,
                            payment.amount_cents,
                            payment.currency
                        ),
                    ));
                }
                Some(_) => {}
            }
            if found.reservation != Some("reserved") {
                problems.push((
                    "inventory",
                    format!(
                        "confirmed, but its stock is {}",
                        found.reservation.unwrap_or("not reserved")
                    ),
                ));
            }
            if found.shipment != Some("scheduled") {
                problems.push((
                    "shipping",
                    format!(
                        "confirmed, but its shipment is {}",
                        found.shipment.unwrap_or("missing")
                    ),
                ));
            }
        }
        _ => {
            if let Some(payment) = found.payment.filter(|payment| payment.status == "captured") {
                problems.push((
                    "payments",
                    format!(
                        "cancelled, but {} {} is still captured (not refunded)",
                        payment.amount_cents, payment.currency
                    ),
                ));
            }
            if found.reservation == Some("reserved") {
                problems.push((
                    "inventory",
                    "cancelled, but its stock is still reserved".to_owned(),
                ));
            }
            if found.shipment == Some("scheduled") {
                problems.push((
                    "shipping",
                    "cancelled, but its shipment is still scheduled".to_owned(),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: &str) -> FinishedOrder {
        FinishedOrder {
            id: Uuid::nil(),
            status: status.to_owned(),
            total_cents: 500,
            currency: "EUR".to_owned(),
            finished_at: Utc::now(),
        }
    }

    fn payment(status: &str, amount_cents: i64) -> Payment {
        Payment {
            order_id: Uuid::nil(),
            status: status.to_owned(),
            amount_cents,
            currency: "EUR".to_owned(),
        }
    }

    fn services(problems: &[(&'static str, String)]) -> Vec<&'static str> {
        problems.iter().map(|(service, _)| *service).collect()
    }

    #[test]
    fn a_confirmed_order_needs_its_payment_stock_and_shipment() {
        let captured = payment("captured", 500);
        let whole = Counterparts {
            payment: Some(&captured),
            reservation: Some("reserved"),
            shipment: Some("scheduled"),
        };
        assert!(judge(&order("confirmed"), &whole).is_empty());
        let short = payment("captured", 499);
        let underpaid = Counterparts {
            payment: Some(&short),
            ..whole
        };
        assert_eq!(
            services(&judge(&order("confirmed"), &underpaid)),
            ["payments"]
        );
        assert_eq!(
            services(&judge(&order("confirmed"), &Counterparts::default())),
            ["payments", "inventory", "shipping"]
        );
    }

    #[test]
    fn a_cancelled_order_holds_no_money_stock_or_shipment() {
        let refunded = payment("refunded", 500);
        let compensated = Counterparts {
            payment: Some(&refunded),
            reservation: Some("released"),
            shipment: Some("cancelled"),
        };
        assert!(judge(&order("cancelled"), &compensated).is_empty());
        assert!(judge(&order("cancelled"), &Counterparts::default()).is_empty());
        let captured = payment("captured", 500);
        let forgotten = Counterparts {
            payment: Some(&captured),
            reservation: Some("reserved"),
            shipment: Some("scheduled"),
        };
        assert_eq!(
            services(&judge(&order("cancelled"), &forgotten)),
            ["payments", "inventory", "shipping"]
        );
    }
}
