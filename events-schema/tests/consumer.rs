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
    future_version.dataschema = Some("events-schema/order.created/v2".into());

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
        "order.created has no version v2 (known: v1); it is not guessed at"
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
