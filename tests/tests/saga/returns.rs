//! The return flow end to end: a customer sends lines of a confirmed order back; shipping
//! books and collects the pickup, orders closes the return, inventory restocks and payments
//! refunds; or the return is cancelled (pickup failed, the customer, its deadline) and the
//! pickup with it, with nothing restocked or refunded.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use system::scenario::Api;

use crate::helpers::{ALL, System, start, start_with_settings};

/// A confirmed order of `quantity` units of a new product at 500 cents, and its id.
async fn confirmed_order(system: &System, quantity: i64) -> (String, String, String) {
    let (user, sku) = system.customer_and_product(500, 10).await;
    let order = system
        .place(&user, json!([{ "sku": sku, "quantity": quantity }]))
        .await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let order = system.final_order(&order_id).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    (user, sku, order_id)
}

/// Asks to return `lines` of `order_id`; the status and the answer.
async fn ask_return(system: &System, order_id: &str, lines: Value) -> (StatusCode, Value) {
    ask_with_key(&system.api, order_id, lines, None).await
}

/// Asks to return `lines` of `order_id` through `api`, with an Idempotency-Key if given.
async fn ask_with_key(
    api: &Api,
    order_id: &str,
    lines: Value,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let path = format!("/orders/{order_id}/returns");
    let body = json!({ "lines": lines });
    let headers: Vec<(&str, &str)> = key
        .map(|key| ("Idempotency-Key", key))
        .into_iter()
        .collect();
    api.call(Method::POST, "orders", &path, Some(&body), &headers)
        .await
        .unwrap()
}

/// Waits until the return is no longer pending, and returns it.
async fn final_return(system: &System, return_id: &str) -> Value {
    let path = format!("/returns/{return_id}");
    system
        .eventually(&format!("return {return_id} ends"), || async {
            system.api.get("orders", &path).await.unwrap()["status"] != "pending"
        })
        .await;
    system.api.get("orders", &path).await.unwrap()
}

async fn pool(system: &System, service: &str) -> PgPool {
    PgPool::connect(&system.database_url(service))
        .await
        .unwrap()
}

/// What payments refunded for `return_id`, in cents, if anything.
async fn refunded(payments: &PgPool, return_id: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT amount_cents FROM return_refunds WHERE return_id = $1::uuid")
        .bind(return_id)
        .fetch_optional(payments)
        .await
        .unwrap()
}

/// The status of `return_id`'s pickup, if shipping booked one.
async fn pickup(shipping: &PgPool, return_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM pickups WHERE return_id = $1::uuid")
        .bind(return_id)
        .fetch_optional(shipping)
        .await
        .unwrap()
}

/// The return flow's series of a closed return, from its declaration: no metric was
/// written for returns.
const RETURN_SERIES: [&str; 3] = [
    r#"conveyor_flow_runs_started_total{flow="return"}"#,
    r#"conveyor_flow_runs_ended_total{flow="return",outcome="success",reason=""}"#,
    r#"conveyor_flow_run_duration_seconds_count{flow="return",outcome="success"}"#,
];

/// The value of `series` in this process's metrics; 0 before its first sample.
fn counted(series: &str) -> f64 {
    let text = conveyor::metrics::metrics().render();
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_return_is_collected_closed_restocked_and_refunded_once() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (_, sku, order_id) = confirmed_order(&system, 3).await;
    assert_eq!(system.reserved(&sku).await, 3);

    let counted_before: Vec<(&str, f64)> = RETURN_SERIES
        .iter()
        .map(|series| (*series, counted(series)))
        .collect();
    let (status, asked) =
        ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 2 }])).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    assert_eq!(asked["status"], "pending", "{asked}");
    assert_eq!(asked["refund_cents"], 1000, "{asked}");
    let return_id = asked["id"].as_str().unwrap().to_owned();

    let closed = final_return(&system, &return_id).await;
    assert_eq!(closed["status"], "closed", "{closed}");
    // The return flow's own series moved (other tests' returns may move them too: at least
    // this one's), counted once the close committed.
    for (series, before) in &counted_before {
        system
            .eventually(&format!("{series} counts this return"), || async {
                counted(series) > *before
            })
            .await;
    }
    let payments = pool(&system, "payments").await;
    system
        .eventually("the two units are restocked and refunded", || async {
            system.reserved(&sku).await == 1 && refunded(&payments, &return_id).await == Some(1000)
        })
        .await;
    let balance: i64 = sqlx::query_scalar(
        "SELECT amount_cents - returned_cents FROM payments WHERE order_id = $1::uuid",
    )
    .bind(&order_id)
    .fetch_one(&payments)
    .await
    .unwrap();
    assert_eq!(
        balance, 500,
        "the order's payment keeps what was not returned"
    );

    // Two of the three came back: asking for two more is refused, naming the line.
    let (status, refused) =
        ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 2 }])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("lines[0].quantity") && message.contains("1 of the 3 bought are left"),
        "{message}"
    );
    let (status, last) =
        ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
    assert_eq!(status, StatusCode::CREATED, "{last}");
    let last = final_return(&system, last["id"].as_str().unwrap()).await;
    assert_eq!(last["status"], "closed", "{last}");
    system
        .eventually("every unit is back in stock", || async {
            system.reserved(&sku).await == 0
        })
        .await;
    system.stop().await;
}

#[tokio::test]
async fn a_return_outside_the_rules_is_refused_with_the_field_named() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (_, sku, order_id) = confirmed_order(&system, 2).await;

    let refusal = |lines: Value| {
        let system = &system;
        let order_id = order_id.clone();
        async move {
            let (status, answer) = ask_return(system, &order_id, lines).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
            answer.to_string()
        }
    };
    let unknown = refusal(json!([{ "sku": "TEA-NOT-BOUGHT", "quantity": 1 }])).await;
    assert!(
        unknown.contains("lines[0].sku") && unknown.contains("did not buy"),
        "{unknown}"
    );
    let twice =
        refusal(json!([{ "sku": sku, "quantity": 1 }, { "sku": sku, "quantity": 1 }])).await;
    assert!(twice.contains("lines[1].sku"), "{twice}");
    let too_many = refusal(json!([{ "sku": sku, "quantity": 3 }])).await;
    assert!(too_many.contains("lines[0].quantity"), "{too_many}");

    // Confirmed more than the return window (30 days) ago.
    let orders = pool(&system, "orders").await;
    sqlx::query("UPDATE orders SET finished_at = now() - interval '31 days' WHERE id = $1::uuid")
        .bind(&order_id)
        .execute(&orders)
        .await
        .unwrap();
    let late = refusal(json!([{ "sku": sku, "quantity": 1 }])).await;
    assert!(late.contains("RETURN_WINDOW"), "{late}");

    // Someone else's order is no order at all; a pending one cannot be returned.
    let (stranger, _, _) = crate::auth::sign_up(&system, "FR").await;
    let (status, _) = stranger
        .api
        .call(
            Method::POST,
            "orders",
            &format!("/orders/{order_id}/returns"),
            Some(&json!({ "lines": [{ "sku": sku, "quantity": 1 }] })),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let returns: i64 = sqlx::query_scalar("SELECT count(*) FROM returns")
        .fetch_one(&orders)
        .await
        .unwrap();
    assert_eq!(returns, 0, "no refused return is stored");
    system.stop().await;
}

/// A client that retries a return request after a timeout, eight times at once: one
/// return, refunded once; the same key with other lines is refused, naming the key.
#[tokio::test]
async fn return_requests_repeated_with_one_idempotency_key_make_one_return() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (_, sku, order_id) = confirmed_order(&system, 3).await;
    let one = json!([{ "sku": sku, "quantity": 1 }]);
    let key = uuid::Uuid::new_v4().to_string();
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (api, order_id, one, key) = (
                system.api.clone(),
                order_id.clone(),
                one.clone(),
                key.clone(),
            );
            tokio::spawn(async move { ask_with_key(&api, &order_id, one, Some(&key)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    let return_id = &answers[0].1["id"];
    assert!(
        answers.iter().all(|(status, made)| [200, 201]
            .contains(&status.as_u16())
            && &made["id"] == return_id),
        "{answers:?}"
    );

    let two = json!([{ "sku": sku, "quantity": 2 }]);
    let (status, other) = ask_with_key(&system.api, &order_id, two, Some(&key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
    assert!(other.to_string().contains("Idempotency-Key"), "{other}");

    let return_id = return_id.as_str().unwrap();
    let closed = final_return(&system, return_id).await;
    assert_eq!(closed["status"], "closed", "{closed}");
    let orders = pool(&system, "orders").await;
    let returns: i64 = sqlx::query_scalar("SELECT count(*) FROM returns WHERE order_id = $1::uuid")
        .bind(&order_id)
        .fetch_one(&orders)
        .await
        .unwrap();
    assert_eq!(returns, 1, "one return for the repeated request");
    let payments = pool(&system, "payments").await;
    system
        .eventually("the one unit is restocked and refunded", || async {
            system.reserved(&sku).await == 2 && refunded(&payments, return_id).await == Some(500)
        })
        .await;
    // A repeat after the return closed still answers with it, as it now stands.
    let (status, again) = ask_with_key(&system.api, &order_id, one, Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "closed", "{again}");
    system.stop().await;
}

/// The name of `service`'s database in this test.
fn database_name(system: &System, service: &str) -> String {
    let url = system.database_url(service);
    url.rsplit('/').next().unwrap().to_owned()
}

/// Returns in flight while the broker goes away and then, overlapping it, payments' and
/// inventory's databases (as a restart of each leaves them): every return still closes,
/// refunded once and restocked once.
#[tokio::test]
async fn returns_in_flight_through_a_broker_outage_and_lost_databases_close_once() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let mut returns = Vec::new();
    for _ in 0..4 {
        let (_, sku, order_id) = confirmed_order(&system, 2).await;
        let (status, asked) =
            ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
        assert_eq!(status, StatusCode::CREATED, "{asked}");
        returns.push((sku, asked["id"].as_str().unwrap().to_owned()));
    }
    let cut = [
        database_name(&system, "payments"),
        database_name(&system, "inventory"),
    ];
    system.cut_off_the_broker();
    for database in &cut {
        conveyor_testkit::allow_connections(database, false).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The broker comes back first: pickups are booked and collected and returns close while
    // the refunds and restocks still fail, and wait in their retry tiers.
    system.restore_the_broker();
    tokio::time::sleep(Duration::from_secs(6)).await;
    for database in &cut {
        conveyor_testkit::allow_connections(database, true).await;
    }

    let payments = pool(&system, "payments").await;
    let inventory = pool(&system, "inventory").await;
    for (sku, return_id) in &returns {
        let closed = final_return(&system, return_id).await;
        assert_eq!(closed["status"], "closed", "{closed}");
        system
            .eventually(
                &format!("return {return_id} is refunded and restocked"),
                || async {
                    refunded(&payments, return_id).await == Some(500)
                        && system.reserved(sku).await == 1
                },
            )
            .await;
    }
    let ids: Vec<uuid::Uuid> = returns.iter().map(|(_, id)| id.parse().unwrap()).collect();
    let count = |pool: &PgPool, query: &'static str| {
        let (pool, ids) = (pool.clone(), ids.clone());
        async move {
            sqlx::query_scalar::<_, i64>(query)
                .bind(ids)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let refunds = count(
        &payments,
        "SELECT count(*) FROM return_refunds WHERE return_id = ANY($1)",
    )
    .await;
    let restocks = count(
        &inventory,
        "SELECT count(*) FROM restocks WHERE return_id = ANY($1)",
    )
    .await;
    assert_eq!(
        (refunds, restocks),
        (4, 4),
        "each return refunded and restocked once"
    );
    let returned: i64 = sqlx::query_scalar(
        "SELECT sum(returned_cents)::bigint FROM payments WHERE returned_cents > 0",
    )
    .fetch_one(&payments)
    .await
    .unwrap();
    assert_eq!(returned, 2000, "four lines of 500 refunded, none twice");
    system.stop().await;
}

#[tokio::test]
async fn a_return_whose_pickup_cannot_be_booked_is_cancelled() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (user, sku, order_id) = confirmed_order(&system, 1).await;
    // The customer moved where shipping does not go.
    let moved = json!({ "address": { "line1": "1 Rua", "city": "Recife", "postal_code": "50000", "country": "BR" } });
    system
        .api
        .patch("users", &format!("/users/{user}"), &moved)
        .await
        .unwrap();
    system
        .eventually("shipping's copy has the new address", || async {
            system
                .cached_user("shipping", &user)
                .await
                .is_some_and(|cached| cached["country"] == "BR")
        })
        .await;

    let (status, asked) =
        ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let return_id = asked["id"].as_str().unwrap().to_owned();
    let cancelled = final_return(&system, &return_id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["reason"], "pickup-failed", "{cancelled}");
    assert_eq!(
        refunded(&pool(&system, "payments").await, &return_id).await,
        None
    );
    assert_eq!(system.reserved(&sku).await, 1, "nothing was restocked");
    system.stop().await;
}

#[tokio::test]
async fn a_cancelled_return_cancels_its_pickup_and_nothing_is_refunded() {
    // The carrier comes late, so the customer's cancel is first.
    let system = start_with_settings(&ALL, |settings| {
        settings.insert(shipping_service::Settings {
            collect_after: Duration::from_secs(3600),
            ..shipping_service::Settings::default()
        });
    })
    .await;
    let (_, sku, order_id) = confirmed_order(&system, 1).await;
    let (_, asked) = ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
    let return_id = asked["id"].as_str().unwrap().to_owned();
    let shipping = pool(&system, "shipping").await;
    system
        .eventually("the carrier is booked", || async {
            pickup(&shipping, &return_id).await.as_deref() == Some("collecting")
        })
        .await;

    let cancel = format!("/returns/{return_id}/cancel");
    let cancelled = system
        .api
        .post("orders", &cancel, &json!({}))
        .await
        .unwrap();
    assert_eq!(cancelled["reason"], "customer-cancelled", "{cancelled}");
    system
        .eventually("the pickup is cancelled", || async {
            pickup(&shipping, &return_id).await.as_deref() == Some("cancelled")
        })
        .await;
    let collections: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM conveyor.scheduled WHERE event_type = 'return.received'",
    )
    .fetch_one(&shipping)
    .await
    .unwrap();
    assert_eq!(collections, 0, "the carrier's collection was taken back");
    let (status, again) = system
        .api
        .call(Method::POST, "orders", &cancel, Some(&json!({})), &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(
        refunded(&pool(&system, "payments").await, &return_id).await,
        None
    );
    assert_eq!(system.reserved(&sku).await, 1);

    // The cancelled lines may be asked back again.
    let (status, again) =
        ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    system.stop().await;
}

#[tokio::test]
async fn a_return_nobody_collects_is_cancelled_at_its_deadline() {
    let system = start_with_settings(&ALL, |settings| {
        settings.insert(shipping_service::Settings {
            collect_after: Duration::from_secs(3600),
            ..shipping_service::Settings::default()
        });
        settings.insert(orders_service::Settings {
            return_timeout: Duration::from_secs(3),
            ..orders_service::Settings::default()
        });
    })
    .await;
    let (_, sku, order_id) = confirmed_order(&system, 1).await;
    let (_, asked) = ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
    let return_id = asked["id"].as_str().unwrap().to_owned();

    let cancelled = final_return(&system, &return_id).await;
    assert_eq!(cancelled["reason"], "deadline-passed", "{cancelled}");
    assert_eq!(cancelled["detail"], "no answer within 3s", "{cancelled}");
    let shipping = pool(&system, "shipping").await;
    system
        .eventually("the pickup is cancelled", || async {
            pickup(&shipping, &return_id).await.as_deref() == Some("cancelled")
        })
        .await;
    assert_eq!(
        refunded(&pool(&system, "payments").await, &return_id).await,
        None
    );
    system.stop().await;
}

#[tokio::test]
async fn finished_returns_and_orders_reconcile_and_a_lost_refund_is_found() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (_, sku, order_id) = confirmed_order(&system, 2).await;
    let (_, asked) = ask_return(&system, &order_id, json!([{ "sku": sku, "quantity": 1 }])).await;
    let return_id = asked["id"].as_str().unwrap().to_owned();
    assert_eq!(final_return(&system, &return_id).await["status"], "closed");
    let payments = pool(&system, "payments").await;
    system
        .eventually("the return is refunded and restocked", || async {
            refunded(&payments, &return_id).await.is_some() && system.reserved(&sku).await == 1
        })
        .await;
    let mut databases = flows::reconcile::Databases::new();
    for service in ["orders", "payments", "inventory", "shipping"] {
        databases.insert(service.to_owned(), pool(&system, service).await);
    }
    let window = flows::reconcile::Window {
        settled_for: Duration::ZERO,
        since: Duration::from_secs(3600),
    };
    let reconciled = async |flow: &'static flows::Flow| {
        let bounds = flows::reconcile::bounds(flow, &databases, window).await?;
        flows::reconcile::reconcile(flow, &databases, bounds, |_| {}).await
    };
    let returns = reconciled(&orders_service::RETURN_FLOW).await.unwrap();
    assert_eq!((returns.checked, returns.found), (1, 0), "{returns:?}");
    let orders = reconciled(&order_saga::ORDER_FLOW).await.unwrap();
    assert_eq!((orders.checked, orders.found), (1, 0), "{orders:?}");

    // A refund that never happened: the keeper expects 500 EUR, payments holds nothing.
    sqlx::query("DELETE FROM return_refunds")
        .execute(&payments)
        .await
        .unwrap();
    let returns = reconciled(&orders_service::RETURN_FLOW).await.unwrap();
    assert_eq!(returns.found, 1, "{returns:?}");
    let finding = &returns.findings[0];
    assert_eq!(
        (
            finding.agreement,
            finding.service,
            finding.run_id.to_string()
        ),
        ("refund", "payments", return_id)
    );
    assert_eq!(
        (finding.expected.clone(), finding.actual.clone()),
        (Some(json!("500 EUR")), None)
    );
    system.stop().await;
}
