//! One trace follows an order through every service: each event of the order's flow carries
//! a `traceparent` with the trace id of the HTTP request that placed it.

use std::time::Duration;

use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::json;

use crate::helpers::{ALL, start};

async fn next_delivery(consumer: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("an event within 30 s")
        .expect("the tap's consumer stays open")
        .expect("a delivery")
}

#[tokio::test]
async fn one_trace_follows_an_order_through_every_service() {
    platform::telemetry::init("system-tests", "warn");
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(900, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    // A tap on conveyor.events that sees every event of this test's vhost.
    let connection = system.env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    let tap = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            tap.name().clone(),
            "conveyor.events".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut events = channel
        .basic_consume(
            tap.name().clone(),
            "tap".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;

    let order_id = placed["id"].as_str().unwrap();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|(event_type, _): &(String, String)| event_type == "order.confirmed")
    {
        let delivery = next_delivery(&mut events).await;
        let envelope = conveyor::Envelope::from_bytes(&delivery.data).unwrap();
        if envelope.correlationid.to_string() != order_id {
            continue;
        }
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let traceparent = conveyor::headers::get_str(&headers, conveyor::headers::TRACEPARENT)
            .unwrap_or_else(|| panic!("{} carries no traceparent", envelope.event_type))
            .to_owned();
        let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
        seen.push((envelope.event_type, trace_id));
    }
    let types: Vec<&str> = seen
        .iter()
        .map(|(event_type, _)| event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "inventory.reserved",
            "payment.captured",
            "shipment.scheduled",
            "order.confirmed"
        ]
    );
    let first = &seen[0].1;
    assert!(
        seen.iter().all(|(_, trace_id)| trace_id == first),
        "{seen:?}"
    );
    assert_ne!(first, "00000000000000000000000000000000");
    system.stop().await;
}
