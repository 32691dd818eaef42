//! One trace follows an order through every service: each event of the order's flow carries
//! a `traceparent` with the trace id of the HTTP request that placed it. The spans, as an
//! exporter receives them, show every service's handling, the dead-lettering with its reason,
//! and a replay in a trace of its own, linked to the one it came from.

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

/// Finished spans of `trace_id`, waiting until `enough` says they are all in.
pub(crate) async fn spans_of(
    trace_id: &str,
    enough: impl Fn(&[opentelemetry_sdk::trace::SpanData]) -> bool,
) -> Vec<opentelemetry_sdk::trace::SpanData> {
    for _ in 0..100 {
        let spans: Vec<_> = conveyor_testkit::finished_spans()
            .into_iter()
            .filter(|span| span.span_context.trace_id().to_string() == trace_id)
            .collect();
        if enough(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the spans of trace {trace_id} did not all arrive")
}

fn attribute(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| attribute.value.as_str().into_owned())
}

/// Each service that handled an event of the spans.
pub(crate) fn handlers(spans: &[opentelemetry_sdk::trace::SpanData]) -> Vec<String> {
    let mut services: Vec<String> = spans
        .iter()
        .filter(|span| span.name == "handle")
        .filter_map(|span| attribute(span, "service"))
        .collect();
    services.sort();
    services.dedup();
    services
}

#[tokio::test]
async fn spans_follow_an_order_and_a_replay_starts_a_trace_linked_to_its_dead_letter() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let (user, sku) = system.customer_and_product(900, 10).await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-0102030405060708-01");
    let (status, placed) = system
        .api
        .call(
            reqwest::Method::POST,
            "orders",
            "/orders",
            Some(&json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] })),
            &[("traceparent", traceparent.as_str())],
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{placed}");
    let order = system.final_order(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed");
    let spans = spans_of(&trace_id, |spans| handlers(spans).len() == 4).await;
    assert_eq!(
        handlers(&spans),
        ["inventory", "orders", "payments", "shipping"]
    );
    let request = spans.iter().find(|span| span.name == "request").unwrap();
    assert_eq!(request.parent_span_id.to_string(), "0102030405060708");
    // The relay's publish spans are children of the spans that wrote the events.
    let ids: Vec<_> = spans
        .iter()
        .map(|span| span.span_context.span_id())
        .collect();
    let publishes: Vec<_> = spans.iter().filter(|span| span.name == "publish").collect();
    assert!(publishes.len() >= 4, "{} publish spans", publishes.len());
    assert!(
        publishes
            .iter()
            .all(|span| ids.contains(&span.parent_span_id))
    );

    // An inventory.reserved payments cannot take, in a trace of its own.
    let broken_trace = uuid::Uuid::new_v4().simple().to_string();
    let broken = conveyor::Envelope::new(
        "inventory",
        "inventory.reserved",
        json!({ "order_id": "not-a-uuid" }),
    );
    let mut table = lapin::types::FieldTable::default();
    conveyor::headers::set_str(
        &mut table,
        conveyor::headers::TRACEPARENT,
        &format!("00-{broken_trace}-0807060504030201-01"),
    );
    system
        .env
        .publish_raw(
            "inventory.reserved",
            &broken.to_bytes(),
            lapin::BasicProperties::default()
                .with_message_id(broken.id.to_string().into())
                .with_headers(table),
        )
        .await;
    let spans = spans_of(&broken_trace, |spans| {
        spans.iter().any(|span| span.name == "dead-letter")
    })
    .await;
    let dead_letter = spans
        .iter()
        .find(|span| span.name == "dead-letter")
        .unwrap();
    assert_eq!(attribute(dead_letter, "reason").as_deref(), Some("schema"));
    assert_eq!(
        attribute(dead_letter, "service").as_deref(),
        Some("payments")
    );

    let options = conveyor::dead_letter::TransferOptions {
        filter: conveyor::dead_letter::Filter {
            id: Some(broken.id.to_string()),
            ..Default::default()
        },
        destination: conveyor::dead_letter::Destination::Replay,
        rate: None,
        limit: None,
        window: conveyor::dead_letter::TransferOptions::DEFAULT_WINDOW,
        run_id: uuid::Uuid::new_v4(),
        one_per_flow: false,
        keep_ids: false,
        stop_on_came_back: false,
        stop: None,
    };
    conveyor::dead_letter::transfer(
        &system.env.amqp,
        &system.names,
        "payments",
        &options,
        |_| {},
    )
    .await
    .unwrap();
    let replays: Vec<_> = conveyor_testkit::finished_spans()
        .into_iter()
        .filter(|span| {
            span.name == "replay"
                && attribute(span, "letter_id").as_deref() == Some(broken.id.to_string().as_str())
        })
        .collect();
    assert_eq!(replays.len(), 1, "one replay span for the one letter");
    let replay = &replays[0];
    assert_ne!(
        replay.span_context.trace_id().to_string(),
        broken_trace,
        "a new trace"
    );
    assert_eq!(
        replay.links.links[0].span_context.trace_id().to_string(),
        broken_trace,
        "linked to the trace it came from"
    );
    system.stop().await;
}
