//! Many orders at once, and customers cancelling while the saga runs.

use std::time::Duration;

use serde_json::json;
use system::scenario::{self, LoadOptions};

use crate::helpers::{ALL, start};

#[tokio::test]
async fn a_customer_cancel_racing_the_saga_leaves_every_order_consistent() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("DE", 100_000_000).await;
    let sku = system.product(700, 1000).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    let mut order_ids = Vec::new();
    for _ in 0..20 {
        let placed = system
            .place(&user, json!([{ "sku": sku, "quantity": 2 }]))
            .await;
        let order_id = placed["id"].as_str().unwrap().to_owned();
        let (status, _) = system
            .api
            .call(
                reqwest::Method::POST,
                "orders",
                &format!("/orders/{order_id}/cancel"),
                None,
                &[],
            )
            .await
            .unwrap();
        assert!(status == 200 || status == 409, "cancel answered {status}");
        order_ids.push(order_id);
    }

    let mut orders = Vec::new();
    for id in &order_ids {
        orders.push(system.final_order(id).await);
    }

    let mut confirmed_quantity = 0;
    for (order, id) in orders.iter().zip(&order_ids) {
        let status = order["status"].as_str().unwrap();
        let settled = || async {
            let captured = system
                .payments(id)
                .await
                .iter()
                .filter(|p| p["status"] == "captured")
                .count();
            let scheduled = system
                .shipments(id)
                .await
                .iter()
                .filter(|s| s["status"] == "scheduled")
                .count();
            let reservation = system.reservation(id).await;
            match status {
                "confirmed" => {
                    captured == 1 && scheduled == 1 && reservation.as_deref() == Some("reserved")
                }
                _ => captured == 0 && scheduled == 0 && reservation.as_deref() != Some("reserved"),
            }
        };
        system
            .eventually(
                &format!("order {id} ({status}) is consistent in every service"),
                settled,
            )
            .await;
        if status == "confirmed" {
            confirmed_quantity += 2;
        } else {
            assert_eq!(order["reason"], "customer-cancelled");
        }
    }
    assert_eq!(system.reserved(&sku).await, confirmed_quantity);
    system.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_orders_satisfy_every_invariant() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let options = LoadOptions {
        orders: 200,
        concurrency: 32,
        rate: None,
        ..LoadOptions::default()
    };
    let amqp = conveyor::AmqpConfig::new(system.env.amqp.url(), "system test checks");
    let urls = system
        .urls()
        .into_iter()
        .map(|(service, url)| (service, vec![url]))
        .collect();

    let report = scenario::run(urls, &amqp, &options, Duration::from_secs(120), |_| {})
        .await
        .unwrap();

    assert_eq!(report.placed, 200);
    for invariant in &report.invariants {
        assert!(invariant.ok, "{}: {}", invariant.name, invariant.detail);
    }
    // Every path was taken: the mix has regular, declined, undeliverable, scarce and cancelled orders.
    assert!(report.confirmed > 100, "{report:?}");
    for reason in ["payment-declined", "shipment-failed", "inventory-rejected"] {
        assert!(
            report.cancelled.get(reason).copied().unwrap_or_default() > 0,
            "no {reason} in {report:?}"
        );
    }
    assert!(report.compensations["payments refunded"] > 0, "{report:?}");
    system.stop().await;
}
