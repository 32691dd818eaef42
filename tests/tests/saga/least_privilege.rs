//! Least privilege on the broker: each service connected as its own user, with the
//! permissions `conveyor topology users` gives, runs the saga, and cannot pass off another
//! service's events as its own.

use std::time::Duration;

use conveyor::{ConfirmChannel, OutgoingMessage, TraceHeaders, headers};
use events_schema::EventData;
use events_schema::inventory::{InventoryReservedV1, Item};
use events_schema::payments::PaymentCapturedV1;
use lapin::types::FieldTable;
use serde_json::json;
use system::ServiceName;

use crate::helpers::{ALL, System, start_with_own_broker_users};

/// Publishes `envelope` as the broker user of `service`, to `exchange` with `routing_key`,
/// claiming in the header to relay it for `claimed_publisher`; the broker's answer.
async fn publish_as(
    system: &System,
    service: ServiceName,
    envelope: &conveyor::Envelope,
    exchange: String,
    routing_key: String,
    claimed_publisher: Option<&str>,
) -> Result<(), conveyor::PublishError> {
    let amqp = &system.service_amqp[&service];
    let connection = amqp.connect().await.unwrap();
    let channel = ConfirmChannel::open(&connection, &amqp.user())
        .await
        .unwrap();
    let mut message = OutgoingMessage::event(&system.names, envelope, &TraceHeaders::new());
    message.exchange = exchange;
    message.routing_key = routing_key;
    if let Some(claimed) = claimed_publisher {
        let mut table = message.properties.headers().clone().unwrap_or_default();
        headers::set_str(&mut table, headers::PUBLISHER, claimed);
        message.properties = message.properties.with_headers(table);
    }
    let published = channel.publish_all(&[message]).await;
    let _ = connection.close(200, "forged".into()).await;
    published
}

#[tokio::test]
async fn services_with_their_own_broker_users_run_the_saga_and_refuse_forged_events() {
    let system = start_with_own_broker_users(&ALL, Duration::from_secs(60)).await;
    let (user, sku) = system.customer_and_product(1250, 100).await;
    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 2 }]))
        .await;
    let order = system.final_order(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed", "{order}");

    // shipping may not publish payment.captured to the events exchange at all.
    let forged_order = uuid::Uuid::new_v4();
    let captured = PaymentCapturedV1 {
        order_id: forged_order,
        ..PaymentCapturedV1::sample()
    };
    let refused = publish_as(
        &system,
        ServiceName::Shipping,
        &events_schema::envelope("payments", &captured),
        system.names.events_exchange(),
        "payment.captured".to_owned(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("ACCESS_REFUSED"),
        "the broker refused the routing key: {refused}"
    );

    // Straight into payments' queue, an inventory.reserved that payments would charge if it
    // believed it: dead-lettered, with or without a claimed original publisher.
    let payments_dlq = system.names.dead_letter_queue("payments");
    for claimed in [None, Some(system.names.broker_user("inventory"))] {
        let reserved = InventoryReservedV1 {
            order_id: forged_order,
            items: vec![Item {
                sku: sku.clone(),
                quantity: 1,
            }],
            user_id: Some(user.parse().unwrap()),
            total_cents: Some(1250),
            currency: Some("EUR".to_owned()),
        };
        publish_as(
            &system,
            ServiceName::Shipping,
            &events_schema::envelope("inventory", &reserved),
            String::new(),
            system.names.service_queue("payments"),
            claimed.as_deref(),
        )
        .await
        .expect("shipping may write to the default exchange (its retry queues need it)");
    }
    system
        .eventually("payments dead-letters both forgeries", || async {
            system.env.queue_len(&payments_dlq).await == 2
        })
        .await;
    let letters = system.env.drain(&payments_dlq).await;
    for letter in &letters {
        let table = letter
            .properties
            .headers()
            .clone()
            .unwrap_or_else(FieldTable::default);
        assert_eq!(
            headers::get_str(&table, headers::ERROR_KIND),
            Some("forbidden-source")
        );
        assert_eq!(
            headers::get_str(&table, headers::PUBLISHER),
            Some(system.names.broker_user("shipping").as_str()),
            "the dead letter names who really sent it"
        );
    }
    assert!(
        system.payments(&forged_order.to_string()).await.is_empty(),
        "nothing was charged for the forged order"
    );
    assert!(system.shipments(&forged_order.to_string()).await.is_empty());
    system.stop().await;
}
