//! `conveyor saga reconcile`'s comparison: quiet on books that balance, and naming each
//! order and service whose records disagree.

use std::time::Duration;

use serde_json::json;
use system::reconcile::{self, Databases, ReconcileOptions};

use crate::helpers::{ALL, System, start};

async fn databases(system: &System) -> Databases {
    let connect = |service: &str| sqlx::PgPool::connect_lazy(&system.database_url(service));
    Databases {
        orders: connect("orders").unwrap(),
        payments: connect("payments").unwrap(),
        inventory: connect("inventory").unwrap(),
        shipping: connect("shipping").unwrap(),
    }
}

#[tokio::test]
async fn reconciliation_names_the_orders_whose_books_disagree() {
    let system = start(&ALL, Duration::from_secs(120)).await;
    let near = system.user("FR", 1_000_000).await;
    let far = system.user("AQ", 1_000_000).await;
    let sku = system.product(700, 10).await;
    system.wait_for_caches(&[&near, &far], &[&sku], &ALL).await;
    let items = json!([{ "sku": sku, "quantity": 1 }]);
    let confirmed = system.place(&near, items.clone()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancelled = system.place(&far, items).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(system.final_order(&confirmed).await["status"], "confirmed");
    assert_eq!(system.final_order(&cancelled).await["status"], "cancelled");
    system.wait_until_refunded(&cancelled).await;
    system
        .eventually("the cancelled order's stock is released", || async {
            system.reservation(&cancelled).await.as_deref() == Some("released")
        })
        .await;

    let databases = databases(&system).await;
    let options = ReconcileOptions {
        settled_for: Duration::ZERO,
        since: Duration::from_secs(3600),
    };
    let balanced = reconcile::reconcile(&databases, options, |_| {})
        .await
        .unwrap();
    assert_eq!(balanced.checked, 2);
    assert!(balanced.discrepancies.is_empty(), "{balanced:?}");

    // A refund and a shipment lost, as a dead letter nobody replayed would leave them.
    sqlx::query("UPDATE payments SET status = 'captured' WHERE order_id = $1::uuid")
        .bind(&cancelled)
        .execute(&databases.payments)
        .await
        .unwrap();
    sqlx::query("DELETE FROM shipments WHERE order_id = $1::uuid")
        .bind(&confirmed)
        .execute(&databases.shipping)
        .await
        .unwrap();
    let report = reconcile::reconcile(&databases, options, |_| {})
        .await
        .unwrap();
    let mut found: Vec<(String, &str)> = report
        .discrepancies
        .iter()
        .map(|found| (found.order_id.to_string(), found.service))
        .collect();
    found.sort();
    let mut expected = vec![(cancelled, "payments"), (confirmed, "shipping")];
    expected.sort();
    assert_eq!(found, expected, "{report:?}");
    assert_eq!(report.found, 2);
    system.stop().await;
}
