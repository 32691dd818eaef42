use std::time::{Duration, Instant};

use conveyor::headers;
use lapin::BasicProperties;
use lapin::message::Delivery;
use serde_json::json;

use conveyor_testkit::{EVENT_TYPE, SERVICE, TestEnv, event, event_with, fast_retries, wait_until};

fn header(delivery: &Delivery, name: &str) -> Option<String> {
    let table = delivery.properties.headers().clone().unwrap_or_default();
    headers::get_str(&table, name).map(str::to_owned)
}

async fn wait_for_dead_letters(env: &TestEnv, count: u32) -> Vec<Delivery> {
    let queue = env.names.dead_letter_queue(SERVICE);
    let arrived = wait_until(Duration::from_secs(15), || async {
        env.queue_len(&queue).await >= count
    })
    .await;
    assert!(arrived, "{count} dead letters expected in {queue}");
    env.drain(&queue).await
}

#[tokio::test]
async fn a_transient_failure_is_retried_after_a_delay_and_then_succeeds() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let flaky = event_with(7, json!({ "n": 7, "behaviour": { "transient-times": 2 } }));
    let started = Instant::now();

    env.publish(&flaky).await;

    env.wait_for_handled(1, Duration::from_secs(15)).await;
    let elapsed = started.elapsed();
    consumer.stop().await;
    let attempts: i32 = sqlx::query_scalar("SELECT previous_attempts FROM handled")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 2, "handled on the third attempt");
    let recorded: Option<i32> = sqlx::query_scalar("SELECT attempt FROM conveyor.inbox")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        recorded,
        Some(3),
        "the inbox records which delivery was handled"
    );
    // Two tiers of 300 ms and 600 ms lie between the first attempt and the success.
    assert!(
        elapsed >= Duration::from_millis(900),
        "retried too soon: {elapsed:?}"
    );
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
}

#[tokio::test]
async fn a_transient_failure_that_never_clears_is_dead_lettered_as_retries_exhausted() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let stuck = event_with(8, json!({ "n": 8, "behaviour": { "transient-times": 99 } }));

    env.publish(&stuck).await;

    let dead = wait_for_dead_letters(&env, 1).await;
    consumer.stop().await;
    assert_eq!(dead[0].data, stuck.to_bytes());
    assert_eq!(
        header(&dead[0], headers::ERROR_KIND).as_deref(),
        Some("retries-exhausted")
    );
    assert_eq!(
        header(&dead[0], headers::ERROR).as_deref(),
        Some("downstream unavailable")
    );
    let table = dead[0].properties.headers().clone().unwrap_or_default();
    assert_eq!(headers::get_u32(&table, headers::ATTEMPTS), Some(3));
    assert_eq!(
        header(&dead[0], headers::ORIGINAL_EXCHANGE).as_deref(),
        Some("conveyor.events"),
        "the original exchange survives the trips through the retry queues"
    );
    assert_eq!(env.handled_count().await, 0);
}

#[tokio::test]
async fn permanent_malformed_unknown_and_panicking_events_are_dead_lettered_with_the_reason() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let permanent = event_with(1, json!({ "n": 1, "behaviour": "permanent" }));
    let panicking = event_with(2, json!({ "n": 2, "behaviour": "panic" }));
    let wrong_data = event_with(3, json!({ "number": "three" }));
    let malformed = b"{ this is not json".to_vec();

    env.publish(&permanent).await;
    env.publish(&panicking).await;
    env.publish(&wrong_data).await;
    env.publish_raw(EVENT_TYPE, &malformed, BasicProperties::default())
        .await;

    let dead = wait_for_dead_letters(&env, 4).await;
    consumer.stop().await;
    let by_body = |body: &[u8]| {
        dead.iter()
            .find(|delivery| delivery.data == body)
            .unwrap_or_else(|| panic!("dead letter with body {}", String::from_utf8_lossy(body)))
    };
    let cases = [
        (
            permanent.to_bytes(),
            "permanent",
            "event 1 can never be applied",
        ),
        (
            panicking.to_bytes(),
            "permanent",
            "handler panicked: handler bug on event 2",
        ),
        (wrong_data.to_bytes(), "schema", "missing field `n`"),
        (malformed, "malformed", "not a CloudEvents JSON envelope"),
    ];
    for (body, kind, reason) in cases {
        let letter = by_body(&body);
        assert_eq!(header(letter, headers::ERROR_KIND).as_deref(), Some(kind));
        let error = header(letter, headers::ERROR).unwrap_or_default();
        assert!(
            error.contains(reason),
            "{error:?} should contain {reason:?}"
        );
        assert_eq!(header(letter, headers::SERVICE).as_deref(), Some(SERVICE));
        assert_eq!(
            header(letter, headers::ORIGINAL_ROUTING_KEY).as_deref(),
            Some(EVENT_TYPE)
        );
        assert!(header(letter, headers::FAILED_AT).is_some());
    }
    assert_eq!(env.handled_count().await, 0);
}

#[tokio::test]
async fn an_event_of_a_type_without_a_handler_is_dead_lettered_as_unknown_type() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let stranger = conveyor::Envelope::new("producer", "test.other", json!({}));
    // Bound by hand: a stale binding is how such events reach a service in practice.
    let connection = env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_bind(
            env.names.service_queue(SERVICE).as_str().into(),
            env.names.events_exchange().as_str().into(),
            "test.other".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();

    env.publish(&stranger).await;

    let dead = wait_for_dead_letters(&env, 1).await;
    consumer.stop().await;
    assert_eq!(
        header(&dead[0], headers::ERROR_KIND).as_deref(),
        Some("unknown-type")
    );
    assert_eq!(dead[0].data, stranger.to_bytes());
}

#[tokio::test]
async fn the_consumer_keeps_serving_after_a_poison_message() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;

    env.publish_raw(EVENT_TYPE, b"\x00\x01 poison", BasicProperties::default())
        .await;
    env.publish(&event_with(0, json!({ "n": 0, "behaviour": "panic" })))
        .await;
    for n in 1..=10 {
        env.publish(&event(n)).await;
    }

    env.wait_for_handled(10, Duration::from_secs(15)).await;
    let dead = wait_for_dead_letters(&env, 2).await;
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (10, 10));
    assert_eq!(dead.len(), 2);
}

#[tokio::test]
async fn a_body_over_the_limit_is_dead_lettered_unparsed_and_the_rest_is_handled() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    // A valid envelope, just too big: 300 KiB of padding in its data.
    let oversized = event_with(1, json!({ "n": 1, "padding": "x".repeat(300 * 1024) }));
    let normal = event(2);

    env.publish(&oversized).await;
    env.publish(&normal).await;

    let dead = wait_for_dead_letters(&env, 1).await;
    env.wait_for_handled(1, Duration::from_secs(15)).await;
    consumer.stop().await;
    let letter = &dead[0];
    assert_eq!(letter.data, oversized.to_bytes(), "kept byte for byte");
    assert_eq!(
        header(letter, headers::ERROR_KIND).as_deref(),
        Some("malformed")
    );
    let error = header(letter, headers::ERROR).unwrap_or_default();
    assert!(
        error.contains("over this consumer's limit of 262144 bytes"),
        "{error}"
    );
    assert_eq!(env.handled_count().await, 1, "only the normal event");
}

#[tokio::test]
async fn a_producers_attempt_and_origin_headers_are_not_believed() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let flaky = event_with(1, json!({ "n": 1, "behaviour": { "transient-times": 1 } }));
    let mut forged = lapin::types::FieldTable::default();
    headers::set_u32(&mut forged, headers::ATTEMPTS, 99);
    headers::set_str(&mut forged, headers::ORIGINAL_EXCHANGE, "somewhere.else");
    headers::set_str(&mut forged, headers::ORIGINAL_ROUTING_KEY, "not.this");
    let properties = BasicProperties::default().with_headers(forged);

    env.publish_raw(EVENT_TYPE, &flaky.to_bytes(), properties)
        .await;

    // One transient failure is retried like any first failure, then handled.
    env.wait_for_handled(1, Duration::from_secs(15)).await;
    consumer.stop().await;
    let dead_letters = env.names.dead_letter_queue(SERVICE);
    assert_eq!(env.queue_len(&dead_letters).await, 0);
    let attempts: i32 = sqlx::query_scalar("SELECT previous_attempts FROM handled WHERE n = 1")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn a_dead_letter_does_not_inherit_a_producers_expiration_or_origin() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let doomed = event_with(1, json!({ "n": 1, "behaviour": "permanent" }));
    let mut forged = lapin::types::FieldTable::default();
    headers::set_str(&mut forged, headers::ORIGINAL_EXCHANGE, "somewhere.else");
    let properties = BasicProperties::default()
        .with_expiration("5000".into())
        .with_headers(forged);

    env.publish_raw(EVENT_TYPE, &doomed.to_bytes(), properties)
        .await;

    let dead = wait_for_dead_letters(&env, 1).await;
    consumer.stop().await;
    assert_eq!(
        dead[0].properties.expiration(),
        &None,
        "it would expire from the DLQ"
    );
    assert_ne!(
        header(&dead[0], headers::ORIGINAL_EXCHANGE).as_deref(),
        Some("somewhere.else")
    );
}

#[tokio::test]
async fn a_transaction_the_database_refuses_every_time_is_dead_lettered_and_its_batch_goes_on() {
    let env = TestEnv::new().await;
    env.declare(&conveyor_testkit::test_consumer(fast_retries()).topology())
        .await;
    // Queued before the consumer starts, so they arrive as one batch.
    for n in 0..20 {
        let behaviour = if n == 5 { "fails-at-commit" } else { "succeed" };
        env.publish(&event_with(n, json!({ "n": n, "behaviour": behaviour })))
            .await;
    }

    let consumer = env.start_consumer(fast_retries()).await;
    let dead = wait_for_dead_letters(&env, 1).await;
    env.wait_for_handled(19, Duration::from_secs(15)).await;
    consumer.stop().await;

    assert_eq!(env.handled_and_distinct().await, (19, 19));
    assert_eq!(dead.len(), 1);
    assert_eq!(
        header(&dead[0], headers::ERROR_KIND).as_deref(),
        Some("permanent")
    );
    let error = header(&dead[0], headers::ERROR).unwrap_or_default();
    assert!(error.contains("refused"), "{error}");
    assert!(error.contains("one_row_per_event"), "{error}");
}

/// One failure in a batch never undoes another message's work: the batch is rolled back and
/// replayed one message at a time, each under a savepoint, in one transaction.
#[tokio::test]
async fn a_failing_message_in_a_batch_leaves_the_rest_of_the_batch_applied_once() {
    let env = TestEnv::new().await;
    let options = conveyor::ConsumerOptions {
        workers: 1,
        ..fast_retries()
    };
    env.declare(&conveyor_testkit::test_consumer(options.clone()).topology())
        .await;
    // Queued before the consumer starts, so they arrive in batches of many; event 5 twice.
    let events: Vec<_> = (0..50)
        .map(|n| {
            let behaviour = if n == 10 || n == 30 {
                "permanent"
            } else {
                "succeed"
            };
            event_with(n, json!({ "n": n, "behaviour": behaviour }))
        })
        .collect();
    for envelope in &events {
        env.publish(envelope).await;
    }
    env.publish(&events[5]).await;

    let consumer = env.start_consumer(options).await;
    let dead = wait_for_dead_letters(&env, 2).await;
    env.wait_for_handled(48, Duration::from_secs(15)).await;
    let duplicates = consumer.stats.duplicates();
    consumer.stop().await;

    assert_eq!(env.handled_and_distinct().await, (48, 48));
    let mut dead_ids: Vec<String> = dead
        .iter()
        .map(|letter| letter.properties.message_id().as_ref().unwrap().to_string())
        .collect();
    dead_ids.sort();
    let mut failing = vec![events[10].id.to_string(), events[30].id.to_string()];
    failing.sort();
    assert_eq!(dead_ids, failing);
    assert_eq!(duplicates, 1, "the second copy of event 5 was skipped");
    let largest_transaction: i64 = sqlx::query_scalar(
        "SELECT max(rows) FROM (SELECT count(*) AS rows FROM handled GROUP BY txid) AS batches",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        largest_transaction > 1,
        "events were applied in batches, not one transaction each"
    );
}

/// The backstop for what no consumer survives: a message that takes its consumer down every
/// time (the process dies before it can ack, nack or dead-letter) is dead-lettered by the
/// broker after `DELIVERY_LIMIT` deliveries, instead of crashing every replica forever.
/// Each crash is a channel closed with the delivery unacknowledged.
#[tokio::test]
async fn a_message_that_kills_its_consumer_every_time_is_dead_lettered_by_the_broker() {
    use futures_util::StreamExt;
    use lapin::options::BasicConsumeOptions;

    let env = TestEnv::new().await;
    env.declare(&conveyor_testkit::test_consumer(fast_retries()).topology())
        .await;
    let crasher = event(1);
    env.publish(&crasher).await;
    let queue = env.names.service_queue(SERVICE);
    let connection = env.connect().await;
    let mut deliveries = 0;
    // A few more than the limit: the broker must step in before the loop runs out.
    for _ in 0..conveyor::DELIVERY_LIMIT + 5 {
        let channel = connection.create_channel().await.unwrap();
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "crashing".into(),
                BasicConsumeOptions::default(),
                Default::default(),
            )
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(2), consumer.next()).await {
            Ok(Some(Ok(_))) => deliveries += 1,
            _ => break,
        }
        // The consumer dies holding the delivery.
        channel.close(200, "crashed".into()).await.unwrap();
    }
    connection.close(200, "done".into()).await.unwrap();

    let dead = wait_for_dead_letters(&env, 1).await;
    assert_eq!(dead[0].data, crasher.to_bytes(), "kept byte for byte");
    assert_eq!(env.queue_len(&queue).await, 0);
    let limit = u32::try_from(conveyor::DELIVERY_LIMIT).unwrap();
    assert!(
        (limit..=limit + 1).contains(&deliveries),
        "dead-lettered after {deliveries} deliveries, the limit is {limit}"
    );
}

/// A handler that returns the database's error with `?` gets the book's mapping (Test a handler): a broken
/// constraint will break on every attempt, so it is dead-lettered at once as `permanent`;
/// anything else from the database (here a statement timeout) is retried.
#[tokio::test]
async fn database_errors_from_a_handler_are_permanent_for_constraints_and_retried_otherwise() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let broken = event_with(1, json!({ "n": 1, "behaviour": "violates-constraint" }));
    let slow = event_with(2, json!({ "n": 2, "behaviour": { "times-out-times": 2 } }));

    env.publish(&broken).await;
    env.publish(&slow).await;
    env.publish(&event(3)).await;

    let dead = wait_for_dead_letters(&env, 1).await;
    env.wait_for_handled(2, Duration::from_secs(15)).await;
    consumer.stop().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data, broken.to_bytes());
    assert_eq!(
        header(&dead[0], headers::ERROR_KIND).as_deref(),
        Some("permanent")
    );
    let table = dead[0].properties.headers().clone().unwrap_or_default();
    assert_eq!(
        headers::get_u32(&table, headers::ATTEMPTS),
        Some(1),
        "not retried"
    );
    let error = header(&dead[0], headers::ERROR).unwrap_or_default();
    assert!(error.contains("null value"), "{error}");
    let slow_attempts: i32 =
        sqlx::query_scalar("SELECT previous_attempts FROM handled WHERE n = 2")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(slow_attempts, 2, "the timed-out statement was retried");
}
