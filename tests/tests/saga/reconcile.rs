//! `conveyor saga reconcile`, the order flow's `flow reconcile` in the saga's words: quiet
//! on books that balance, and naming each order and service whose records disagree.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ALL, System, start};
use crate::processes::conveyor;

/// `conveyor saga reconcile --json` over every order finished so far: its report, and
/// whether it exited 0.
fn saga_reconcile(system: &System) -> (Value, bool) {
    let output = conveyor(
        system,
        &["saga", "reconcile", "--settled-for", "0s", "--json"],
    );
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "saga reconcile printed no report ({error}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (report, output.status.success())
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

    let (balanced, ok) = saga_reconcile(&system);
    assert!(ok, "{balanced}");
    assert_eq!(balanced["checked"], 2, "{balanced}");
    assert_eq!(balanced["discrepancies"], json!([]), "{balanced}");

    // A refund and a shipment lost, as a dead letter nobody replayed would leave them.
    let payments = sqlx::PgPool::connect(&system.database_url("payments"))
        .await
        .unwrap();
    sqlx::query("UPDATE payments SET status = 'captured' WHERE order_id = $1::uuid")
        .bind(&cancelled)
        .execute(&payments)
        .await
        .unwrap();
    // And the right amount captured in the wrong currency.
    sqlx::query("UPDATE payments SET currency = 'USD' WHERE order_id = $1::uuid")
        .bind(&confirmed)
        .execute(&payments)
        .await
        .unwrap();
    let shipping = sqlx::PgPool::connect(&system.database_url("shipping"))
        .await
        .unwrap();
    sqlx::query("DELETE FROM shipments WHERE order_id = $1::uuid")
        .bind(&confirmed)
        .execute(&shipping)
        .await
        .unwrap();
    let (report, ok) = saga_reconcile(&system);
    assert!(!ok, "a discrepancy exits 1: {report}");
    let mut found: Vec<(String, String, String)> = report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|found| {
            let text = |field: &str| found[field].as_str().unwrap_or_default().to_owned();
            (text("order_id"), text("service"), text("problem"))
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (
            cancelled,
            "payments".to_owned(),
            "cancelled, but its payment is 700 EUR where nothing is owed".to_owned(),
        ),
        (
            confirmed.clone(),
            "payments".to_owned(),
            "confirmed, but its payment is 700 USD where 700 EUR is owed".to_owned(),
        ),
        (
            confirmed,
            "shipping".to_owned(),
            "confirmed, but its shipment is nothing where scheduled is owed".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(found, expected, "{report}");
    assert_eq!(report["found"], 3, "{report}");
    system.stop().await;
}
