//! Each path of the saga, and the compensations that follow a cancellation.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ALL, order_without_shipping, start};

#[tokio::test]
async fn an_order_that_every_service_accepts_is_confirmed() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(1250, 100).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 2 }]))
        .await;
    let order_id = placed["id"].as_str().unwrap();
    let order = system.final_order(order_id).await;

    assert_eq!(placed["status"], "pending");
    assert_eq!(placed["total_cents"], 2500);
    assert_eq!(order["status"], "confirmed");
    let payments = system.payments(order_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "captured");
    assert_eq!(payments[0]["amount_cents"], 2500);
    let shipments = system.shipments(order_id).await;
    assert_eq!(shipments.len(), 1);
    assert_eq!(shipments[0]["status"], "scheduled");
    assert_eq!(
        system.reservation(order_id).await.as_deref(),
        Some("reserved")
    );
    assert_eq!(system.reserved(&sku).await, 2);
    system.stop().await;
}

#[tokio::test]
async fn short_stock_cancels_the_order_before_anything_is_charged() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(1250, 1).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 2 }]))
        .await;
    let order_id = placed["id"].as_str().unwrap();
    let order = system.final_order(order_id).await;

    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reason"], "inventory-rejected");
    assert!(
        order["detail"]
            .as_str()
            .unwrap()
            .contains("insufficient-stock")
    );
    assert!(system.payments(order_id).await.is_empty());
    assert!(system.shipments(order_id).await.is_empty());
    assert_eq!(system.reserved(&sku).await, 0);
    system.stop().await;
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order_and_releases_the_stock() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1000).await;
    let sku = system.product(1250, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order_id = placed["id"].as_str().unwrap();
    let order = system.final_order(order_id).await;

    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reason"], "payment-declined");
    let payments = system.payments(order_id).await;
    assert_eq!(payments[0]["status"], "declined");
    assert_eq!(payments[0]["reason"], "credit-limit-exceeded");
    system
        .eventually("the reservation is released", || async {
            system.reservation(order_id).await.as_deref() == Some("released")
        })
        .await;
    assert_eq!(system.reserved(&sku).await, 0);
    assert!(system.shipments(order_id).await.is_empty());
    system.stop().await;
}

#[tokio::test]
async fn an_undeliverable_country_cancels_the_order_refunds_and_releases() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("AQ", 1_000_000).await;
    let sku = system.product(1250, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 3 }]))
        .await;
    let order_id = placed["id"].as_str().unwrap();
    let order = system.final_order(order_id).await;

    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reason"], "shipment-failed");
    system.wait_until_refunded(order_id).await;
    system
        .eventually("the reservation is released", || async {
            system.reservation(order_id).await.as_deref() == Some("released")
        })
        .await;
    assert_eq!(system.reserved(&sku).await, 0);
    assert!(system.shipments(order_id).await.is_empty());
    system.stop().await;
}

#[tokio::test]
async fn an_order_past_the_saga_deadline_is_cancelled_and_compensated() {
    let (system, order_id) = order_without_shipping(Duration::from_millis(1500)).await;
    let order_id = order_id.as_str();
    let order = system.final_order(order_id).await;

    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reason"], "deadline-passed");
    system.wait_until_refunded(order_id).await;
    system
        .eventually("the reservation is released", || async {
            system.reservation(order_id).await.as_deref() == Some("released")
        })
        .await;
    system.stop().await;
}

#[tokio::test]
async fn placing_an_order_is_refused_for_unknown_or_deactivated_users_and_unknown_skus() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(1250, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    let order = |user: String, sku: String| json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] });

    let stranger = uuid::Uuid::new_v4().to_string();
    let (status, unknown_user) = system
        .api
        .call(
            reqwest::Method::POST,
            "orders",
            "/orders",
            Some(&order(stranger.clone(), sku.clone())),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 422);
    assert_eq!(unknown_user["error"], format!("unknown user {stranger}"));
    let (status, unknown_sku) = system
        .api
        .call(
            reqwest::Method::POST,
            "orders",
            "/orders",
            Some(&order(user.clone(), "NOPE-1".into())),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 422);
    assert_eq!(unknown_sku["error"], "unknown sku NOPE-1");
    system.deactivate(&user).await;
    system
        .eventually("orders knows the user is deactivated", || async {
            let cached = system
                .api
                .get("orders", &format!("/cache/users/{user}"))
                .await
                .unwrap();
            cached["active"] == false
        })
        .await;
    let (status, deactivated) = system
        .api
        .call(
            reqwest::Method::POST,
            "orders",
            "/orders",
            Some(&order(user.clone(), sku.clone())),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 422);
    assert_eq!(deactivated["error"], format!("user {user} is deactivated"));
    system.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_order_and_one_saga() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(300, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    let body = json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] });
    let key = [("Idempotency-Key", "checkout-42")];

    let (first_status, first) = system
        .api
        .call(
            reqwest::Method::POST,
            "orders",
            "/orders",
            Some(&body),
            &key,
        )
        .await
        .unwrap();
    let (second_status, second) = system
        .api
        .call(
            reqwest::Method::POST,
            "orders",
            "/orders",
            Some(&body),
            &key,
        )
        .await
        .unwrap();

    assert_eq!(first_status, 201);
    assert_eq!(second_status, 200);
    assert_eq!(first["id"], second["id"]);
    let order_id = first["id"].as_str().unwrap();
    assert_eq!(system.final_order(order_id).await["status"], "confirmed");
    assert_eq!(system.orders_of(&user).await.len(), 1);
    assert_eq!(system.reserved(&sku).await, 1);
    system.stop().await;
}

#[tokio::test]
async fn the_credit_limit_is_a_balance_across_orders_and_a_refund_frees_it() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 3000).await;
    let sku = system.product(1000, 100).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    // Five orders of 1000 at once against a limit of 3000: three fit, two must be declined.
    let placed = system.place_at_once(&user, &sku, 5).await;
    let mut confirmed = Vec::new();
    for order in &placed {
        let id = order["id"].as_str().unwrap();
        let done = system.final_order(id).await;
        match done["status"].as_str() {
            Some("confirmed") => confirmed.push(id.to_owned()),
            _ => assert_eq!(done["reason"], "payment-declined", "{done}"),
        }
    }
    assert_eq!(
        confirmed.len(),
        3,
        "orders within the balance are confirmed"
    );

    // An undeliverable order is charged, then refunded: the refund frees the balance, so a
    // second order of the whole limit is charged too.
    let far_away = system.user("AQ", 1000).await;
    system.wait_for_caches(&[&far_away], &[], &ALL).await;
    for _ in 0..2 {
        let placed = system
            .place(&far_away, json!([{ "sku": sku, "quantity": 1 }]))
            .await;
        let id = placed["id"].as_str().unwrap();
        assert_eq!(system.final_order(id).await["reason"], "shipment-failed");
        system.wait_until_refunded(id).await;
    }
    // order.confirmed, payment.refunded, inventory.released have no subscriber: normal in
    // publish/subscribe, so nothing of them piles up as unrouted.
    let unrouted = system.env.names.unrouted();
    assert_eq!(system.env.queue_len(&unrouted).await, 0);
    system.stop().await;
}
