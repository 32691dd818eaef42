//! Events delivered twice and out of order, published by hand: the end state is the same.

use std::time::Duration;

use events_schema::Event;
use events_schema::inventory::{InventoryReservedV1, Item};
use events_schema::orders::{CancelReason, OrderCancelledV1};
use events_schema::payments::PaymentCapturedV1;
use events_schema::products::{ProductCreatedV1, ProductUpdatedV1};
use events_schema::users::{Address, UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use uuid::Uuid;

use crate::helpers::{ALL, USERS_COPIED_BY, start};

fn address(country: &str) -> Address {
    Address {
        line1: "1 Shuffle Lane".into(),
        city: "Reorder".into(),
        postal_code: "999".into(),
        country: country.into(),
    }
}

/// A capture of 999 EUR for `order_id`.
fn captured(order_id: Uuid, user_id: Uuid) -> PaymentCapturedV1 {
    PaymentCapturedV1 {
        order_id,
        payment_id: Uuid::now_v7(),
        user_id,
        amount_cents: 999,
        currency: "EUR".into(),
    }
}

/// A registration (version 1) in France.
fn registered(user_id: Uuid, name: &str, credit_limit_cents: i64) -> UserRegisteredV1 {
    UserRegisteredV1 {
        user_id,
        email: format!("{}@example.com", name.to_lowercase()),
        name: name.into(),
        address: address("FR"),
        credit_limit_cents,
        currency: "EUR".into(),
        version: 1,
    }
}

#[tokio::test]
async fn user_changes_delivered_twice_and_shuffled_leave_the_newest_copy_everywhere() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user_id = Uuid::now_v7();
    let registered = registered(user_id, "Shuffled", 100);
    let update = |version: i64, credit: i64, country: &str| UserUpdatedV1 {
        user_id,
        email: "shuffled@example.com".into(),
        name: "Shuffled".into(),
        address: address(country),
        credit_limit_cents: credit,
        currency: "EUR".into(),
        version,
    };
    let v2 = events_schema::envelope("users", &update(2, 200, "DE"));
    let v3 = events_schema::envelope("users", &update(3, 300, "IE"));
    let v1 = events_schema::envelope("users", &registered);

    // Newest first, then older ones, each of them twice.
    for event in [&v3, &v1, &v2, &v3, &v2, &v1] {
        system.publish(event).await;
    }

    let payments_copy = format!("/cache/users/{user_id}");
    let user = user_id.to_string();
    system
        .eventually("every copy has version 3", || async {
            let mut at_three = true;
            for service in USERS_COPIED_BY.iter().copied() {
                let copy = system.cached_user(service, &user).await;
                at_three &= copy.is_some_and(|copy| copy["version"] == 3);
            }
            at_three
        })
        .await;
    // Every version reached every copy (the older ones after the newest) before judging
    // that nothing went backwards.
    for service in USERS_COPIED_BY.iter().copied() {
        wait_until_handled(&system, service, &[v1.id, v2.id, v3.id]).await;
    }
    let payments = system.api.get("payments", &payments_copy).await.unwrap();
    let shipping = system.api.get("shipping", &payments_copy).await.unwrap();
    assert_eq!(payments["credit_limit_cents"], 300);
    assert_eq!(shipping["country"], "IE");
    assert_eq!(payments["version"], 3);
    assert_eq!(shipping["version"], 3);
    let orders = system.api.get("orders", &payments_copy).await.unwrap();
    assert_eq!(orders["version"], 3);
    system.stop().await;
}

/// Orders prices baskets from its copy of the products: an older price delivered late, or
/// twice, must never replace a newer one.
#[tokio::test]
async fn product_changes_delivered_twice_and_shuffled_leave_the_newest_price() {
    let system = start(&["orders"], Duration::from_secs(30)).await;
    let sku = format!(
        "SHUFFLED-{}",
        Uuid::new_v4().simple().to_string()[..12].to_ascii_uppercase()
    );
    let product = |version: i64, price_cents: i64| ProductUpdatedV1 {
        sku: sku.clone(),
        name: "Shuffled".into(),
        price_cents,
        currency: "EUR".into(),
        version,
    };
    let v1 = events_schema::envelope(
        "inventory",
        &ProductCreatedV1 {
            sku: sku.clone(),
            name: "Shuffled".into(),
            price_cents: 100,
            currency: "EUR".into(),
            version: 1,
        },
    );
    let v2 = events_schema::envelope("inventory", &product(2, 200));
    let v3 = events_schema::envelope("inventory", &product(3, 300));

    for event in [&v3, &v1, &v2, &v3, &v2, &v1] {
        system.publish(event).await;
    }

    wait_until_handled(&system, "orders", &[v1.id, v2.id, v3.id]).await;
    let copy = system
        .api
        .get("orders", &format!("/cache/products/{sku}"))
        .await
        .unwrap();
    assert_eq!(copy["price_cents"], 300, "{copy}");
    assert_eq!(copy["version"], 3, "{copy}");
    system.stop().await;
}

/// A deactivation that overtakes the registration leaves shipping a copy with no address;
/// the registration, though older, still gives it one, so a payment made while the user was
/// active is shipped instead of walking the retry tiers.
#[tokio::test]
async fn a_deactivation_before_the_registration_still_leaves_shipping_an_address() {
    let system = start(&["shipping"], Duration::from_secs(30)).await;
    let user_id = Uuid::now_v7();
    let registered = registered(user_id, "Overtaken", 100_000);
    let deactivated = UserDeactivatedV1 {
        user_id,
        version: 2,
    };
    system
        .publish(&events_schema::envelope("users", &deactivated))
        .await;
    let copy = format!("/cache/users/{user_id}");
    system
        .eventually("shipping knows the deactivation", || async {
            let (status, body) = system
                .api
                .call(reqwest::Method::GET, "shipping", &copy, None, &[])
                .await
                .unwrap();
            status.is_success() && body["active"] == false
        })
        .await;
    system
        .publish(&events_schema::envelope("users", &registered))
        .await;
    let order_id = Uuid::now_v7();
    let captured = captured(order_id, user_id);
    system
        .publish(&events_schema::envelope("payments", &captured).with_correlation_id(order_id))
        .await;

    let id = order_id.to_string();
    system
        .eventually("the paid order is shipped", || async {
            !system.shipments(&id).await.is_empty()
        })
        .await;
    let copy = system.api.get("shipping", &copy).await.unwrap();
    assert_eq!(copy["country"], "FR", "{copy}");
    assert_eq!(copy["active"], false, "{copy}");
    assert_eq!(copy["version"], 2, "{copy}");
    system.stop().await;
}

#[tokio::test]
async fn answers_arriving_after_a_cancellation_are_compensated_not_applied() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    system.wait_for_caches(&[&user], &[], &ALL).await;
    let user_id: Uuid = user.parse().unwrap();
    let order_id = Uuid::now_v7();
    let cancelled = OrderCancelledV1 {
        order_id,
        user_id,
        reason: CancelReason::CustomerCancelled,
        detail: None,
        skus: vec!["GHOST-1".into()],
    };
    let reserved = InventoryReservedV1 {
        order_id,
        items: vec![Item {
            sku: "GHOST-1".into(),
            quantity: 1,
        }],
        user_id: Some(user_id),
        total_cents: Some(999),
        currency: Some("EUR".into()),
    };
    let captured = captured(order_id, user_id);
    let as_event = |data: serde_json::Value, event_type: &str| {
        conveyor::Envelope::new("orders", event_type, data).with_correlation_id(order_id)
    };
    let cancellation = events_schema::envelope("orders", &cancelled).with_correlation_id(order_id);
    let late_reservation = as_event(
        serde_json::to_value(&reserved).unwrap(),
        InventoryReservedV1::TYPE,
    );
    let late_capture = as_event(
        serde_json::to_value(&captured).unwrap(),
        PaymentCapturedV1::TYPE,
    );

    // The cancellation first, and handled; then the late answers, each delivered twice.
    system.publish(&cancellation).await;
    for service in ["payments", "shipping"] {
        wait_until_handled(&system, service, &[cancellation.id]).await;
    }
    for _ in 0..2 {
        system.publish(&late_reservation).await;
        system.publish(&late_capture).await;
    }
    wait_until_handled(&system, "payments", &[late_reservation.id]).await;
    wait_until_handled(&system, "shipping", &[late_capture.id]).await;

    let id = order_id.to_string();
    assert!(
        system.payments(&id).await.is_empty(),
        "no charge for a cancelled order"
    );
    assert!(
        system.shipments(&id).await.is_empty(),
        "no shipment for a cancelled order"
    );
    assert_eq!(
        system::scenario::dead_letters(&system.env.amqp)
            .await
            .unwrap(),
        0,
        "late answers are skipped, not dead-lettered"
    );
    system.stop().await;
}

/// Waits until `service` has recorded every event of `ids` in its inbox: handled (applied
/// or skipped).
async fn wait_until_handled(system: &crate::helpers::System, service: &str, ids: &[Uuid]) {
    let pool = sqlx::PgPool::connect(&system.database_url(service))
        .await
        .unwrap();
    system
        .eventually(&format!("{service} handles events {ids:?}"), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT count(*) = cardinality($1) FROM conveyor.inbox WHERE message_id = ANY($1)",
            )
            .bind(ids)
            .fetch_one(&pool)
            .await
            .unwrap()
        })
        .await;
    pool.close().await;
}

#[tokio::test]
async fn a_service_whose_copy_was_lost_rebuilds_it_from_republished_state() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let active = system.user("FR", 4321).await;
    let gone = system.user("DE", 1234).await;
    let sku = system.product(1999, 5).await;
    system.deactivate(&gone).await;
    system
        .wait_for_caches(&[&active, &gone], &[&sku], &ALL)
        .await;
    system
        .eventually("payments knows the deactivation", || async {
            system
                .api
                .get("payments", &format!("/cache/users/{gone}"))
                .await
                .unwrap()["active"]
                == false
        })
        .await;
    // The payments copy is lost, as if payments had started on an empty database.
    let payments_db = damage::connect(&system.database_url("payments")).await;
    damage::execute(&payments_db, "DELETE FROM users_cache").await;

    let republished = system::caches::rebuild(&system.api, system::ServiceName::PAYMENTS)
        .await
        .unwrap();

    // One user.updated each, and the deactivation of the deactivated one.
    assert_eq!(republished["users"], 3);
    system
        .eventually("payments has both users again", || async {
            system.cached_user("payments", &active).await.is_some()
                && system.cached_user("payments", &gone).await.is_some()
        })
        .await;
    let restored = system
        .api
        .get("payments", &format!("/cache/users/{active}"))
        .await
        .unwrap();
    let deactivated = system
        .api
        .get("payments", &format!("/cache/users/{gone}"))
        .await
        .unwrap();
    assert_eq!(restored["credit_limit_cents"], 4321);
    assert_eq!(restored["active"], true);
    assert_eq!(deactivated["active"], false);
    // Copies that were current ignore the repeats: orders still knows the deactivation.
    let orders_copy = system
        .api
        .get("orders", &format!("/cache/users/{gone}"))
        .await
        .unwrap();
    assert_eq!(orders_copy["active"], false);
    assert!(
        system::caches::rebuild(&system.api, system::ServiceName::USERS)
            .await
            .is_err()
    );
    system.stop().await;
}

/// A deactivated user's shipping copy rebuilt from the republish has the address as well
/// as the deactivation (before, it got only `user.deactivated`, and a paid order of that user
/// walked the retry tiers for want of an address); the copies that were current stay
/// deactivated through the repeated state.
#[tokio::test]
async fn a_rebuilt_copy_of_a_deactivated_user_keeps_the_address_and_the_deactivation() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let gone = system.user("DE", 1234).await;
    system.wait_for_caches(&[&gone], &[], &ALL).await;
    let deactivated = system.deactivate(&gone).await;
    let version = deactivated["version"].clone();
    let copy = format!("/cache/users/{gone}");
    let copies_deactivated = || async {
        let mut all = true;
        for service in USERS_COPIED_BY.iter().copied() {
            let copy = system.cached_user(service, &gone).await;
            all &= copy.is_some_and(|copy| copy["active"] == false && copy["version"] == version);
        }
        all
    };
    system
        .eventually("every copy knows the deactivation", copies_deactivated)
        .await;
    let shipping_db = damage::connect(&system.database_url("shipping")).await;
    damage::execute(&shipping_db, "DELETE FROM users_cache").await;

    let republished = system::caches::rebuild(&system.api, system::ServiceName::SHIPPING)
        .await
        .unwrap();
    assert_eq!(republished["users"], 2);
    // Registered, deactivated, then the republished pair: wait until the pair is out, and
    // handled by every copy, before judging the copies.
    let users_db = damage::connect(&system.database_url("users")).await;
    let published = || async {
        sqlx::query_scalar::<_, uuid::Uuid>(
            "SELECT event_id FROM conveyor.published WHERE subject = $1 ORDER BY created_at, event_id",
        )
        .bind(&gone)
        .fetch_all(&users_db)
        .await
        .unwrap()
    };
    system
        .eventually("the republished events are out", || async {
            published().await.len() == 4
        })
        .await;
    let pair = published().await.split_off(2);
    for service in USERS_COPIED_BY.iter().copied() {
        wait_until_handled(&system, service, &pair).await;
    }
    let shipping = system.api.get("shipping", &copy).await.unwrap();
    assert_eq!(shipping["country"], "DE", "{shipping}");
    assert!(
        copies_deactivated().await,
        "a copy took the repeat for a reactivation"
    );
    system.stop().await;
}

/// Direct database access for the tests that damage a service's table on purpose or read
/// what a service published.
mod damage {
    pub(crate) async fn connect(url: &str) -> sqlx::PgPool {
        sqlx::PgPool::connect(url).await.unwrap()
    }

    pub(crate) async fn execute(pool: &sqlx::PgPool, statement: &'static str) {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
}
