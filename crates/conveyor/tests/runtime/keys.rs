//! Per-key serialization: events that share a key are never handled at the same time, by
//! two workers or two replicas, and a key held elsewhere delays only its own events.

use std::time::Duration;

use conveyor::{ConsumerOptions, Publisher, key_lock_id};
use serde_json::json;

use conveyor_testkit::{SERVICE, TestEnv, event_with, fast_retries};

const COUNTERS: i64 = 4;
const PER_COUNTER: i64 = 100;

/// Events that each add one to counter `n % 4`, serialized on that counter and on the next
/// one, in either order: overlapping key sets that two batches could lock crosswise.
fn crossing_events() -> Vec<conveyor::Envelope> {
    (0..COUNTERS * PER_COUNTER)
        .map(|n| {
            let counter = format!("c{}", n % COUNTERS);
            let neighbour = format!("c{}", (n + 1) % COUNTERS);
            let keys = if n % 2 == 0 {
                [counter.clone(), neighbour]
            } else {
                [neighbour, counter.clone()]
            };
            event_with(n, json!({ "n": n, "counter": counter, "keys": keys }))
        })
        .collect()
}

#[tokio::test]
async fn events_sharing_a_key_are_never_handled_at_once_by_two_replicas() {
    let env = TestEnv::new().await;
    // Small batches on many channels: many transactions with crosswise key sets at once.
    let options = ConsumerOptions {
        workers: 3,
        prefetch: 10,
        batch_size: 5,
        ..ConsumerOptions::default()
    };
    let consumer = conveyor_testkit::test_consumer(options.clone());
    env.declare(&consumer.topology()).await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    // Queued before anyone consumes, so every batch mixes counters and key orders.
    publisher.publish_events(&crossing_events()).await.unwrap();

    let first = env.start_consumer(options.clone()).await;
    let second = env.start_replica(options).await;
    env.wait_for_handled(COUNTERS * PER_COUNTER, Duration::from_secs(60))
        .await;
    let retried = first.stats.retried() + second.stats.retried();
    first.stop().await;
    second.stop().await;

    assert_eq!(
        env.handled_and_distinct().await,
        (COUNTERS * PER_COUNTER, COUNTERS * PER_COUNTER)
    );
    for counter in 0..COUNTERS {
        // A lost update (two read-modify-writes of one counter at once) shows as less.
        assert_eq!(env.counter(&format!("c{counter}")).await, PER_COUNTER);
    }
    // Crosswise key sets never deadlocked: nothing had to be retried.
    assert_eq!(retried, 0);
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
}

#[tokio::test]
async fn a_key_held_by_a_transaction_that_never_ends_delays_only_its_own_events() {
    let env = TestEnv::new().await;
    // Retry tiers that a failing event would use up in under a second: a busy key must
    // not count as a failure, or the held events would be dead-lettered.
    let options = ConsumerOptions {
        lock_timeout: Duration::from_millis(300),
        ..fast_retries()
    };
    let consumer = conveyor_testkit::test_consumer(options.clone());
    env.declare(&consumer.topology()).await;
    // Another transaction takes the key "stuck" and does not end.
    let mut holder = env.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key_lock_id(SERVICE, "stuck"))
        .execute(&mut *holder)
        .await
        .unwrap();
    let events: Vec<_> = (0..60)
        .map(|n| {
            let subject = if n % 20 == 0 {
                "stuck".to_owned()
            } else {
                format!("free-{n}")
            };
            event_with(n, json!({ "n": n })).with_subject(subject)
        })
        .collect();
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    publisher.publish_events(&events).await.unwrap();

    let running = env.start_consumer(options).await;
    env.wait_for_handled(57, Duration::from_secs(20)).await;
    // Held well past every retry tier.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stuck_handled: i64 = sqlx::query_scalar("SELECT count(*) FROM handled WHERE n % 20 = 0")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stuck_handled, 0, "an event ran while its key was held");
    holder.rollback().await.unwrap();
    env.wait_for_handled(60, Duration::from_secs(20)).await;
    let retried = running.stats.retried();
    running.stop().await;

    assert_eq!(env.handled_and_distinct().await, (60, 60));
    assert!(
        retried >= 3,
        "the held events were retried, {retried} retries"
    );
    assert_eq!(failed_attempts(&env).await, 0, "waiting counted as failing");
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
}

/// Events handled after failed attempts, as recorded by the handler.
async fn failed_attempts(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM handled WHERE previous_attempts > 0")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}
