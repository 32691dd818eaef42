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

    let lock = system
        .hold_lock(
            "inventory",
            sqlx::query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE").bind(&locked_sku),
        )
        .await;
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

/// `/readyz` says which dependency is missing while it is, and `/healthz` (the process is
/// alive) stays 200: an orchestrator stops routing to the instance without restarting it.
#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let system = start(&["orders"], Duration::from_secs(120)).await;
    let base = system.urls()["orders"].clone();
    let probe = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let Ok(response) = reqwest::get(&url).await else {
                return (0, Value::Null);
            };
            let status = response.status().as_u16();
            // `/healthz` answers plain text.
            let body = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let ready = |expected: u16| {
        let probe = &probe;
        async move { probe("/readyz").await.0 == expected }
    };
    system.eventually("orders is ready", || ready(200)).await;

    system.cut_off_the_broker();
    system
        .eventually("orders is not ready without its broker", || ready(503))
        .await;
    let (_, body) = probe("/readyz").await;
    assert_eq!(body["broker"], false, "{body}");
    assert_eq!(body["database"], true, "{body}");
    assert_eq!(probe("/healthz").await.0, 200);
    system.restore_the_broker();
    system
        .eventually("orders is ready again", || ready(200))
        .await;

    let name = system
        .database_url("orders")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    conveyor_testkit::allow_connections(&name, false).await;
    let during = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (status, body) = probe("/readyz").await;
            if status == 503 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let healthy = probe("/healthz").await.0;
    conveyor_testkit::allow_connections(&name, true).await;
    let during = during.expect("orders is not ready without its database");
    assert_eq!(during["database"], false, "{during}");
    assert_eq!(healthy, 200);
    system
        .eventually("orders is ready once its database is back", || ready(200))
        .await;
    system.stop().await;
}

/// Ten requests at once with one user's Idempotency-Key and basket: one order, one saga.
#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_make_one_order() {
    let system = start(&ALL, Duration::from_secs(120)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(100, 100).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    let body = json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] });
    let key = uuid::Uuid::new_v4().to_string();
    let requests = (0..10).map(|_| {
        let (api, body, key) = (system.api.clone(), body.clone(), key.clone());
        tokio::spawn(async move {
            api.call(
                reqwest::Method::POST,
                "orders",
                "/orders",
                Some(&body),
                &[("Idempotency-Key", &key)],
            )
            .await
            .unwrap()
        })
    });
    let mut answers = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        answers.push(request.await.unwrap());
    }

    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| [200, 201].contains(&status.as_u16())),
        "{answers:?}"
    );
    let id = &answers[0].1["id"];
    assert!(
        answers.iter().all(|(_, order)| &order["id"] == id),
        "{answers:?}"
    );
    assert_eq!(system.orders_of(&user).await.len(), 1);
    let order = system.final_order(id.as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(system.reserved(&sku).await, 1, "one reservation");
    assert_eq!(system.payments(id.as_str().unwrap()).await.len(), 1);
    system.stop().await;
}
