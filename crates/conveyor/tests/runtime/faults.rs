use std::time::Duration;

use conveyor::{ConsumerOptions, Outbox, OutboxRelay, Publisher, Shutdown};

use crate::child;
use conveyor_testkit::{SERVICE, TestEnv, event, test_consumer, wait_until};

/// Holds this test's database down for `outage`: new connections refused and every open one
/// ended, as a Postgres restart or failover would, then lets connections in again.
async fn database_outage(env: &TestEnv, outage: Duration) {
    conveyor_testkit::allow_connections(&env.database, false).await;
    tokio::time::sleep(outage).await;
    conveyor_testkit::allow_connections(&env.database, true).await;
}

/// Events committed to the outbox by the producer below, and how fast.
const EVENTS: i64 = 10_000;
const CHUNK: i64 = 250;

#[tokio::test]
async fn every_event_is_handled_exactly_once_across_dropped_broker_and_database_connections() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    let (stop_relay, relay_shutdown) = Shutdown::new();
    let relay = tokio::spawn(
        OutboxRelay::new(env.pool.clone(), env.amqp.clone(), env.names.clone()).run(relay_shutdown),
    );
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();

    // 10,000 events through the outbox, committed over several seconds in 40 transactions,
    // so every fault below lands while there is work in the relay's and the consumer's hands.
    let producer = {
        let pool = env.pool.clone();
        tokio::spawn(async move {
            for chunk in 0..EVENTS / CHUNK {
                let events: Vec<_> = (chunk * CHUNK..(chunk + 1) * CHUNK).map(event).collect();
                loop {
                    let attempt = async {
                        let mut tx = pool.begin().await?;
                        Outbox::new()
                            .add_all(&mut tx, &events)
                            .await
                            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                        tx.commit().await
                    };
                    if attempt.await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let env = &env;
    let fault_at = |handled: i64| async move {
        env.wait_for_handled(handled, Duration::from_secs(60)).await;
        let seen = env.handled_count().await;
        assert!(
            seen < EVENTS,
            "a fault came after all the work was done ({seen} handled)"
        );
    };
    fault_at(1_500).await;
    env.close_all_connections();
    assert!(
        !producer.is_finished(),
        "the first broker fault came while the outbox was still being filled"
    );
    fault_at(4_000).await;
    database_outage(env, Duration::from_secs(3)).await;
    fault_at(6_500).await;
    env.close_all_connections();
    producer.await.unwrap();
    publisher
        .publish(&event(EVENTS))
        .await
        .expect("the publisher reconnects by itself");

    env.wait_for_handled(EVENTS + 1, Duration::from_secs(120))
        .await;
    stop_relay.fire();
    relay.await.unwrap();
    let dead_lettered = consumer.stats.dead_lettered();
    consumer.stop().await;
    let letters = env.drain(&env.names.dead_letter_queue(SERVICE)).await;
    let errors: Vec<String> = letters
        .iter()
        .map(|letter| format!("{:?}", letter.properties.headers()))
        .collect();
    assert_eq!(env.handled_and_distinct().await, (EVENTS + 1, EVENTS + 1));
    assert_eq!(
        (dead_lettered, letters.len()),
        (0, 0),
        "the consumer held its batches through the outage: {errors:#?}"
    );
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 0);
}

#[tokio::test]
async fn sigterm_during_a_stream_loses_nothing() {
    a_signal_during_a_stream_loses_nothing("TERM").await;
}

#[tokio::test]
async fn sigint_during_a_stream_loses_nothing() {
    a_signal_during_a_stream_loses_nothing("INT").await;
}

/// A consumer process stopped by `signal` mid-stream exits cleanly, and every event is
/// either handled or back in the queue, once; a new consumer handles the rest.
async fn a_signal_during_a_stream_loses_nothing(signal: &str) {
    const STREAM: i64 = 5_000;
    let env = TestEnv::new().await;
    env.declare(&test_consumer(ConsumerOptions::default()).topology())
        .await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let events: Vec<_> = (0..STREAM).map(event).collect();
    publisher.publish_events(&events).await.unwrap();

    let mut service = child::spawn("consumer", &env.database_url(), &env.amqp.url());
    env.wait_for_handled(200, Duration::from_secs(60)).await;
    child::send_signal(&service, signal);
    let at_signal = env.handled_count().await;
    let exit = child::exit_within(&mut service, Duration::from_secs(60)).await;

    assert!(
        at_signal < STREAM,
        "the signal came after the stream was handled"
    );
    assert!(
        exit.success(),
        "the service exits cleanly on SIG{signal}: {exit}"
    );
    let queue = env.names.service_queue(SERVICE);
    // A quorum queue takes back a closed channel's unacked messages a moment after the
    // close: count once the consumer is gone and the returns have landed (a message both
    // handled and returned would keep the sum above the stream's size).
    env.wait_for_no_consumers(&queue).await;
    let accounted = || async { env.handled_count().await + i64::from(env.queue_len(&queue).await) };
    wait_until(Duration::from_secs(10), || async {
        accounted().await == STREAM
    })
    .await;
    assert_eq!(
        accounted().await,
        STREAM,
        "every event is either handled or back in the queue, once"
    );
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    env.wait_for_handled(STREAM, Duration::from_secs(60)).await;
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (STREAM, STREAM));
}
