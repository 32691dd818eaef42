//! Orders' deadlines are scheduled events: placing an order schedules one, ending it takes
//! it back, and an order the previous release placed during a rolling upgrade (that release
//! watched `deadline_at` itself and scheduled nothing) is adopted, with the time it has left.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{System, start};

/// Deadlines of `order_id` waiting in orders' schedule.
async fn deadlines_scheduled(orders: &PgPool, order_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM conveyor.scheduled
         WHERE event_type = 'order.deadline-passed' AND subject = $1",
    )
    .bind(order_id)
    .fetch_one(orders)
    .await
    .unwrap()
}

/// Every service but shipping, with a deadline of a minute, and orders' database.
async fn without_shipping() -> (System, PgPool) {
    let system = start(&WITHOUT_SHIPPING, Duration::from_secs(60)).await;
    let orders = PgPool::connect(&system.database_url("orders"))
        .await
        .unwrap();
    (system, orders)
}

const WITHOUT_SHIPPING: [&str; 4] = ["users", "inventory", "orders", "payments"];

/// Inserts a pending order as the previous release's `POST /orders` wrote it (a deadline
/// `deadline_in` from now, nothing scheduled), that release's watchdog having last watched
/// `watched_ago`; answers its id.
async fn placed_by_the_previous_release(
    orders: &PgPool,
    deadline_in: &str,
    watched_ago: &str,
) -> String {
    let order_id = Uuid::now_v7().to_string();
    let mut tx = orders.begin().await.unwrap();
    sqlx::query("UPDATE saga_clock SET ticked_at = clock_timestamp() - $1::interval")
        .bind(watched_ago)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, items, total_cents, currency, deadline_at)
         VALUES ($1::uuid, $2, 'pending', $3, 500, 'EUR', clock_timestamp() + $4::interval)",
    )
    .bind(&order_id)
    .bind(Uuid::now_v7())
    .bind(json!([{ "sku": "TEA-GREEN", "quantity": 1, "unit_price_cents": 500 }]))
    .bind(deadline_in)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    order_id
}

#[tokio::test]
async fn an_order_the_previous_release_placed_is_cancelled_at_its_deadline_and_not_before() {
    let (system, orders) = without_shipping().await;
    let order_id = placed_by_the_previous_release(&orders, "4 s", "0 s").await;

    let order = system.final_order(&order_id).await;

    // Only a scheduled deadline cancels an order now: orders adopted this one.
    assert_eq!(order["reason"], "deadline-passed", "{order}");
    let (adopted, on_time): (bool, bool) = sqlx::query_as(
        "SELECT deadline_scheduled, finished_at >= deadline_at FROM orders WHERE id = $1::uuid",
    )
    .bind(&order_id)
    .fetch_one(&orders)
    .await
    .unwrap();
    assert!(adopted, "{order}");
    assert!(on_time, "cancelled before its deadline: {order}");
    orders.close().await;
    system.stop().await;
}

#[tokio::test]
async fn an_adopted_order_keeps_the_time_nobody_watched_before_the_upgrade() {
    let (system, orders) = without_shipping().await;
    // Every orders instance of the previous release stopped 30 s ago, 32 s before this
    // order's deadline: it has 32 s left, not 2.
    let order_id = placed_by_the_previous_release(&orders, "2 s", "30 s").await;

    system
        .eventually("orders adopts the order", || async {
            sqlx::query_scalar("SELECT deadline_scheduled FROM orders WHERE id = $1::uuid")
                .bind(&order_id)
                .fetch_one(&orders)
                .await
                .unwrap()
        })
        .await;

    let left: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM timer.due_at + clock.unwatched - clock_timestamp())::float8
         FROM conveyor.scheduled AS timer, conveyor.schedule_clock AS clock
         WHERE timer.subject = $1 AND clock.id = 1",
    )
    .bind(&order_id)
    .fetch_one(&orders)
    .await
    .unwrap();
    assert!(left > 20.0, "the deadline is due in {left:.1} s");
    let order = system
        .api
        .get("orders", &format!("/orders/{order_id}"))
        .await
        .unwrap();
    assert_eq!(order["status"], "pending", "{order}");
    orders.close().await;
    system.stop().await;
}

#[tokio::test]
async fn a_placed_order_waits_on_its_scheduled_deadline_until_it_ends() {
    let (system, orders) = without_shipping().await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(500, 10).await;
    system
        .wait_for_caches(&[&user], &[&sku], &WITHOUT_SHIPPING)
        .await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order_id = placed["id"].as_str().unwrap().to_owned();

    // Shipping is not running: the order waits after its payment, its deadline with it.
    assert_eq!(deadlines_scheduled(&orders, &order_id).await, 1);
    // The order flow's in-flight gauge counts it, through the runs query orders declares.
    let in_flight = flows::metrics::count_in_flight(&orders, &order_saga::ORDER_FLOW);
    assert_eq!(in_flight.await.unwrap(), 1);
    let cancelled = system
        .api
        .post("orders", &format!("/orders/{order_id}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(cancelled["reason"], "customer-cancelled", "{cancelled}");
    assert_eq!(deadlines_scheduled(&orders, &order_id).await, 0);
    let in_flight = flows::metrics::count_in_flight(&orders, &order_saga::ORDER_FLOW);
    assert_eq!(in_flight.await.unwrap(), 0);
    orders.close().await;
    system.stop().await;
}
