//! What HTTP traffic may and may not do to a service: list a page at a time, and never take
//! the database connections its consumer needs.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{ALL, start};

#[tokio::test]
async fn orders_are_listed_newest_first_a_page_at_a_time() {
    let system = start(&ALL, Duration::from_secs(120)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(100, 100).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    let mut placed = Vec::new();
    for _ in 0..3 {
        let order = system
            .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
            .await;
        placed.push(order["id"].as_str().unwrap().to_owned());
    }
    let ids = |page: &Value| -> Vec<String> {
        page["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|order| order["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = system
        .api
        .get("orders", &format!("/orders?user_id={user}&limit=2"))
        .await
        .unwrap();
    assert_eq!(ids(&first), [placed[2].clone(), placed[1].clone()]);
    assert_eq!(first["next"], placed[1].as_str());
    let second = system
        .api
        .get(
            "orders",
            &format!("/orders?user_id={user}&limit=2&after={}", placed[1]),
        )
        .await
        .unwrap();
    assert_eq!(ids(&second), [placed[0].clone()]);
    assert_eq!(second["next"], Value::Null);

    for query in [
        "limit=0",
        "limit=1001",
        "user_id=bad",
        "after=not-a-cursor",
        &format!("after={}", uuid::Uuid::new_v4()),
    ] {
        let (status, body) = system
            .api
            .call(
                reqwest::Method::GET,
                "orders",
                &format!("/orders?{query}"),
                None,
                &[],
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "GET /orders?{query}: {body}");
        assert!(body["error"].is_string(), "GET /orders?{query}: {body}");
    }
    system.stop().await;
}

/// Requests stuck on a row lock hold every connection HTTP may have; the consumer keeps
/// its own and the saga goes on.
#[tokio::test]
async fn requests_stuck_on_a_lock_do_not_starve_the_saga() {
    let system = start(&ALL, Duration::from_secs(120)).await;
    let user = system.user("FR", 1_000_000).await;
    let locked_sku = system.product(100, 100).await;
    let sku = system.product(100, 100).await;
    system
        .wait_for_caches(&[&user], &[&locked_sku, &sku], &ALL)
        .await;

    let mut holder = sqlx::PgConnection::connect(&system.database_url("inventory"))
        .await
        .unwrap();
    let mut lock = holder.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE")
        .bind(&locked_sku)
        .execute(&mut *lock)
        .await
        .unwrap();
    // More requests than the service has connections in all.
    let stuck: Vec<_> = (0..12)
        .map(|_| {
            let api = system.api.clone();
            let path = format!("/products/{locked_sku}/stock");
            tokio::spawn(async move {
                let body = json!({ "stock": 50 });
                api.call(reqwest::Method::PUT, "inventory", &path, Some(&body), &[])
                    .await
                    .map(|(status, _)| status.as_u16())
            })
        })
        .collect();
    let waiting = system.database_url("inventory");
    system
        .eventually("requests wait on the product's lock", || async {
            lock_waiters(&waiting).await >= 3
        })
        .await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order = system.final_order(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert!(
        lock_waiters(&waiting).await >= 3,
        "the order went through only after the stuck requests let go"
    );

    lock.commit().await.unwrap();
    let mut answered = Vec::new();
    for request in stuck {
        answered.push(request.await.unwrap().unwrap());
    }
    // Those that waited past the HTTP pool's acquire timeout were told to try again.
    assert!(
        answered.iter().all(|status| [200, 503].contains(status)),
        "{answered:?}"
    );
    assert!(answered.contains(&200), "{answered:?}");
    system.stop().await;
}

/// Sessions of the database at `url` waiting for a lock.
async fn lock_waiters(url: &str) -> i64 {
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let waiting = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    let _ = connection.close().await;
    waiting
}
