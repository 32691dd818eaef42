//! The contract enforced by a real consumer: events that break it are dead-lettered as
//! `schema` with the validator's message, never half-applied.

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Consumer, EventHandler, HandlerContext, HandlerError, Shutdown, headers};
use conveyor_testkit::TestEnv;
use events_schema::orders::OrderCreatedV1;
use events_schema::{EventContract, EventData, envelope};

const SERVICE: &str = "inventory";

/// Records each order it is given in the test's `handled` table.
struct RecordOrder;

impl EventHandler for RecordOrder {
    type Event = OrderCreatedV1;

    async fn handle(
        &self,
        order: OrderCreatedV1,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let message_id = ctx.event().id;
        sqlx::query("INSERT INTO handled (message_id, n, previous_attempts) VALUES ($1, $2, 0)")
            .bind(message_id)
            .bind(order.total_cents)
            .execute(ctx.tx())
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_consumer_dead_letters_events_that_break_the_contract_and_applies_the_rest() {
    let env = TestEnv::new().await;
    let consumer = Consumer::builder(SERVICE)
        .handler(RecordOrder)
        .contract(EventContract::shared().unwrap())
        .build()
        .unwrap();
    env.declare(&consumer.topology()).await;
    let (stop, shutdown) = Shutdown::new();
    let running = tokio::spawn(consumer.run(env.amqp.clone(), env.pool.clone(), shutdown));
    let valid = envelope("orders", &OrderCreatedV1::sample());
    let mut invalid = envelope("orders", &OrderCreatedV1::sample());
    invalid.data["items"][0]["quantity"] = serde_json::json!(0);
    let mut future_version = envelope("orders", &OrderCreatedV1::sample());
    future_version.dataschema = Some("events-schema/order.created/v3".into());

    for event in [&invalid, &future_version, &valid] {
        env.publish(event).await;
    }

    env.wait_for_handled(1, Duration::from_secs(15)).await;
    let dead_letter_queue = env.names.dead_letter_queue(SERVICE);
    let wait = async {
        while env.queue_len(&dead_letter_queue).await < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("two dead letters");
    stop.fire();
    running.await.unwrap();
    let dead = env.drain(&dead_letter_queue).await;
    let reason = |body: &[u8]| {
        let letter = dead
            .iter()
            .find(|d| d.data == body)
            .expect("dead letter present");
        let table = letter.properties.headers().clone().unwrap_or_default();
        (
            headers::get_str(&table, headers::ERROR_KIND)
                .unwrap_or_default()
                .to_owned(),
            headers::get_str(&table, headers::ERROR)
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let (kind, error) = reason(&invalid.to_bytes());
    assert_eq!(kind, "schema");
    assert!(
        error.contains("/items/0/quantity: 0 is less than the minimum of 1"),
        "{error}"
    );
    let (kind, error) = reason(&future_version.to_bytes());
    assert_eq!(kind, "schema");
    assert_eq!(
        error,
        "order.created has no version v3 (known: v1, v2); it is not guessed at"
    );
    assert_eq!(env.handled_and_distinct().await, (1, 1));
    let applied: i64 = sqlx::query_scalar("SELECT n FROM handled")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(applied, OrderCreatedV1::sample().total_cents);
}

#[tokio::test]
async fn an_outbox_with_the_contract_refuses_a_bad_event_before_it_is_written() {
    let env = TestEnv::new().await;
    let outbox = conveyor::Outbox::new()
        .with_contract(EventContract::shared().unwrap() as Arc<dyn conveyor::Contract>);
    let mut bad = envelope("orders", &OrderCreatedV1::sample());
    bad.data.as_object_mut().unwrap().remove("total_cents");
    let mut tx = env.pool.begin().await.unwrap();

    let error = outbox.add(&mut tx, &bad).await.unwrap_err().to_string();
    outbox
        .add(&mut tx, &envelope("orders", &OrderCreatedV1::sample()))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    assert!(error.contains("breaks its contract"), "{error}");
    assert!(
        error.contains("\"total_cents\" is a required property"),
        "{error}"
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM conveyor.outbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(written, 1);
}

/// A producer without a database checks its events the same way: a bad one is refused before
/// it leaves, naming the field, and nothing reaches the broker; a good one is sent.
#[tokio::test]
async fn a_publisher_with_the_contract_refuses_a_bad_event_before_it_is_sent() {
    let env = TestEnv::new().await;
    env.declare(&conveyor::Topology::shared(&env.names)).await;
    let publisher = conveyor::Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap()
        .with_contract(EventContract::shared().unwrap() as Arc<dyn conveyor::Contract>);
    let mut bad = envelope("orders", &OrderCreatedV1::sample());
    bad.data.as_object_mut().unwrap().remove("total_cents");
    // No service listens here: what the publisher sends lands in the unrouted queue.
    let unrouted = env.names.unrouted();

    let error = publisher.publish(&bad).await.unwrap_err();
    let good = envelope("orders", &OrderCreatedV1::sample());
    publisher.publish(&good).await.unwrap();

    assert!(
        matches!(error, conveyor::PublishError::Contract { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("\"total_cents\" is a required property"),
        "{error}"
    );
    let sent = env.drain(&unrouted).await;
    assert_eq!(sent.len(), 1, "only the good event left the producer");
    assert_eq!(sent[0].data, good.to_bytes());
}

/// Integers JSON Schema accepts but the Rust types cannot read (`2.0`, `-0`, 2^63), and money
/// past its ceiling, are dead-lettered as `schema` by the contract's check with its message,
/// before the handler; none is applied, the valid event is.
#[tokio::test]
async fn a_consumer_dead_letters_integers_its_types_cannot_read_and_money_past_its_ceiling() {
    let env = TestEnv::new().await;
    let consumer = Consumer::builder(SERVICE)
        .handler(RecordOrder)
        .contract(EventContract::shared().unwrap())
        .build()
        .unwrap();
    env.declare(&consumer.topology()).await;
    let (stop, shutdown) = Shutdown::new();
    let running = tokio::spawn(consumer.run(env.amqp.clone(), env.pool.clone(), shutdown));
    // Each bad event with the field at fault; read from text, as a consumer reads it.
    let bad: Vec<(conveyor::Envelope, &str)> = [
        ("items", "quantity", "2.0", "/items/0/quantity"),
        (
            "items",
            "unit_price_cents",
            "-0",
            "/items/0/unit_price_cents",
        ),
        ("", "total_cents", "9223372036854775808", "/total_cents"),
        ("", "total_cents", "1000000000001", "/total_cents"),
    ]
    .into_iter()
    .map(|(list, field, literal, at)| {
        let mut event = envelope("orders", &OrderCreatedV1::sample());
        if list.is_empty() {
            event.data[field] = serde_json::json!("__LITERAL__");
        } else {
            event.data[list][0][field] = serde_json::json!("__LITERAL__");
        }
        let text = String::from_utf8(event.to_bytes())
            .unwrap()
            .replace("\"__LITERAL__\"", literal);
        (conveyor::Envelope::from_bytes(text.as_bytes()).unwrap(), at)
    })
    .collect();
    let valid = envelope("orders", &OrderCreatedV1::sample());

    for (event, _) in &bad {
        env.publish(event).await;
    }
    env.publish(&valid).await;

    env.wait_for_handled(1, Duration::from_secs(15)).await;
    let dead_letter_queue = env.names.dead_letter_queue(SERVICE);
    let wait = async {
        while env.queue_len(&dead_letter_queue).await < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("four dead letters");
    stop.fire();
    running.await.unwrap();
    let dead = env.drain(&dead_letter_queue).await;
    assert_eq!(dead.len(), 4);
    for (event, at) in &bad {
        let letter = dead
            .iter()
            .find(|d| d.data == event.to_bytes())
            .unwrap_or_else(|| panic!("no dead letter for {at}"));
        let table = letter.properties.headers().clone().unwrap_or_default();
        let kind = headers::get_str(&table, headers::ERROR_KIND).unwrap_or_default();
        let error = headers::get_str(&table, headers::ERROR).unwrap_or_default();
        assert_eq!(kind, "schema", "{at}: {error}");
        let by_the_contract = error.starts_with("order.created v1 is invalid: ")
            && error.contains(&format!("{at}: "));
        assert!(
            by_the_contract,
            "{at}: the contract's check, not the decoder, refuses it: {error}"
        );
        assert!(!error.contains("invalid type"), "{at}: {error}");
    }
    assert_eq!(env.handled_and_distinct().await, (1, 1));
}
