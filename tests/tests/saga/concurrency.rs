//! Many orders at once, and customers cancelling while the saga runs.

use std::time::Duration;

use serde_json::json;
use system::scenario::{self, LoadOptions, Path, Placed, Strays};

use crate::helpers::{ALL, System, start};

/// When a customer's cancel lands in the saga.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CancelMoment {
    /// Right after placing: mostly before inventory acts.
    AtOnce,
    /// The moment inventory has reserved, racing payments and shipping: any end is right
    /// as long as every service agrees.
    Racing,
    /// After the reservation while payments is held for this user (the test holds the
    /// user's key lock in payments' database): the cancel must win, and the reservation
    /// made before it must be released.
    WhilePaymentsWaits,
}

/// Customers cancel at every point of the saga. Every order must end consistent in every
/// service, read once the flow is quiet, and the cancels held between the reservation and
/// the payment prove that compensation after a partial saga ran.
#[tokio::test]
async fn a_customer_cancel_racing_the_saga_leaves_every_order_consistent() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let fixtures = scenario::prepare(&system.api).await.unwrap();
    let sku = &fixtures.products[0];
    let held_user = &fixtures.regular_users[1];
    let payments_lock = system
        .hold_lock(
            "payments",
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(conveyor::key_lock_id(
                "payments",
                &format!("user:{held_user}"),
            )),
        )
        .await;

    let moments = [
        CancelMoment::AtOnce,
        CancelMoment::Racing,
        CancelMoment::WhilePaymentsWaits,
    ];
    let mut placed = Vec::new();
    let mut held = Vec::new();
    for index in 0..45 {
        let moment = moments[index % moments.len()];
        let user = match moment {
            CancelMoment::WhilePaymentsWaits => held_user,
            _ => &fixtures.regular_users[0],
        };
        let order = system
            .place(user, json!([{ "sku": sku, "quantity": 2 }]))
            .await;
        let order_id = order["id"].as_str().unwrap().to_owned();
        if moment != CancelMoment::AtOnce {
            wait_for_reservation(&system, &order_id).await;
        }
        let accepted = cancel(&system, &order_id).await;
        if moment == CancelMoment::WhilePaymentsWaits {
            assert!(
                accepted,
                "order {order_id}'s cancel lost while payments waited"
            );
            held.push(order_id.clone());
        }
        placed.push(Placed {
            order_id,
            path: Path::CustomerCancel,
            cancel_accepted: Some(accepted),
            returned: None,
        });
    }
    // Payments now sees the reservations of orders already cancelled.
    payments_lock.commit().await.unwrap();

    let report = scenario::settle(
        &system.api,
        &system.env.amqp,
        &fixtures,
        &placed,
        Duration::from_secs(120),
        Strays::default(),
    )
    .await
    .unwrap();
    for invariant in &report.invariants {
        assert!(invariant.ok, "{}: {}", invariant.name, invariant.detail);
    }
    // The flow is quiet: what each service says now is final.
    for order_id in &held {
        assert_eq!(
            system.reservation(order_id).await.as_deref(),
            Some("released"),
            "order {order_id} was cancelled after its stock was reserved"
        );
        for payment in system.payments(order_id).await {
            assert_ne!(payment["status"], "captured", "order {order_id}: {payment}");
        }
    }
    system.stop().await;
}

/// Waits until inventory has decided on the order's stock, polling every millisecond so the
/// cancel that follows lands as soon after as a client can make it.
async fn wait_for_reservation(system: &System, order_id: &str) {
    let seen = conveyor_testkit::wait_until_every(
        Duration::from_secs(30),
        Duration::from_millis(1),
        || async { system.reservation(order_id).await.is_some() },
    )
    .await;
    assert!(seen, "inventory never decided on order {order_id}");
}

/// The customer's cancel: whether it came in time (200) or too late (409).
async fn cancel(system: &System, order_id: &str) -> bool {
    let (status, answer) = system
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
    assert!(
        status == 200 || status == 409,
        "cancel answered {status}: {answer}"
    );
    status == 200
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
    let report = scenario::run(
        &system.api,
        &amqp,
        &options,
        Duration::from_secs(120),
        |_| {},
    )
    .await
    .unwrap();

    assert_eq!(report.placed, 200);
    for invariant in &report.invariants {
        assert!(invariant.ok, "{}: {}", invariant.name, invariant.detail);
    }
    // Every path was taken: the mix has regular, declined, undeliverable, scarce and cancelled
    // orders (each order's own end is the invariant "each order ended as its path predicts").
    assert!(report.confirmed > 0, "{report:?}");
    for reason in ["payment-declined", "shipment-failed", "inventory-rejected"] {
        assert!(
            report.cancelled.get(reason).copied().unwrap_or_default() > 0,
            "no {reason} in {report:?}"
        );
    }
    assert!(report.compensations["payments refunded"] > 0, "{report:?}");
    system.stop().await;
}
