//! Money and input a careless or hostile client sends: amounts that would wrap, repeated
//! lines, another user's Idempotency-Key. Each is answered clearly, never with wrong money.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ALL, System, start};

async fn place_keyed(system: &System, user: &str, items: Value, key: &str) -> (u16, Value) {
    let body = json!({ "user_id": user, "items": items });
    let (status, answer) = system
        .api
        .call(
            Method::POST,
            "orders",
            "/orders",
            Some(&body),
            &[("Idempotency-Key", key)],
        )
        .await
        .unwrap();
    (status.as_u16(), answer)
}

#[tokio::test]
async fn prices_and_totals_beyond_the_ceilings_are_refused_never_wrapped() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    // 2^62 + 25 cents: four of them would wrap an i64 total to 100 cents.
    let wrapping = json!({ "sku": "WRAP-1", "name": "Too dear", "price_cents": (1_i64 << 62) + 25, "stock": 10 });
    let (status, refused) = system
        .api
        .call(Method::POST, "inventory", "/products", Some(&wrapping), &[])
        .await
        .unwrap();
    assert_eq!(status, 422, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("price_cents"));

    // The dearest allowed product, in a basket whose total passes the ceiling.
    let user = system.user("FR", 1_000_000).await;
    let dear = system.product(10_000_000_000, 10_000).await;
    let dearer = system.product(10_000_000_000, 10_000).await;
    system
        .wait_for_caches(&[&user], &[&dear, &dearer], &ALL)
        .await;
    let items = json!([{ "sku": dear, "quantity": 1000 }, { "sku": dearer, "quantity": 1000 }]);
    let (status, refused) = place_keyed(&system, &user, items, "too-much").await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("total would exceed"),
        "{refused}"
    );
    assert_eq!(system.orders_of(&user).await.len(), 0);
    system.stop().await;
}

#[tokio::test]
async fn a_sku_on_two_lines_is_one_line_and_the_order_is_confirmed() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(250, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    let placed = system
        .place(
            &user,
            json!([{ "sku": sku, "quantity": 2 }, { "sku": sku, "quantity": 3 }]),
        )
        .await;
    assert_eq!(placed["items"].as_array().unwrap().len(), 1, "{placed}");
    assert_eq!(placed["items"][0]["quantity"], 5);
    assert_eq!(placed["total_cents"], 1250);
    let order = system.final_order(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(system.reserved(&sku).await, 5);
    system.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_its_user_and_its_basket() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let alice = system.user("FR", 1_000_000).await;
    let bob = system.user("FR", 1_000_000).await;
    let sku = system.product(300, 10).await;
    system.wait_for_caches(&[&alice, &bob], &[&sku], &ALL).await;
    let one = json!([{ "sku": sku, "quantity": 1 }]);

    let (status, alices) = place_keyed(&system, &alice, one.clone(), "checkout-1").await;
    assert_eq!(status, 201, "{alices}");
    // Bob happens to send the same key: he gets an order of his own, not Alice's.
    let (status, bobs) = place_keyed(&system, &bob, one.clone(), "checkout-1").await;
    assert_eq!(status, 201, "{bobs}");
    assert_ne!(bobs["id"], alices["id"]);
    assert_eq!(bobs["user_id"], bob.as_str());
    // Alice reuses her key for another basket: refused, nothing placed.
    let two = json!([{ "sku": sku, "quantity": 2 }]);
    let (status, reused) = place_keyed(&system, &alice, two, "checkout-1").await;
    assert_eq!(status, 422, "{reused}");
    assert!(
        reused["error"]
            .as_str()
            .unwrap()
            .contains("used for a different order")
    );
    // Alice retries the same request: the same order.
    let (status, retried) = place_keyed(&system, &alice, one, "checkout-1").await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["id"], alices["id"]);
    assert_eq!(system.orders_of(&alice).await.len(), 1);
    system.stop().await;
}

#[tokio::test]
async fn negative_stock_is_a_bad_request_not_a_conflict() {
    let system = start(&["inventory"], Duration::from_secs(30)).await;
    let sku = system.product(100, 5).await;
    let (status, answer) = system
        .api
        .call(
            Method::PUT,
            "inventory",
            &format!("/products/{sku}/stock"),
            Some(&json!({ "stock": -5 })),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "stock -5 is negative");
    system.stop().await;
}
