use std::time::Duration;

use conveyor::{ConsumerOptions, Outbox, OutboxRelay, Publisher, Shutdown};

use crate::child;
use conveyor_testkit::{SERVICE, TestEnv, event, test_consumer};

/// Kills this test database's connections, as a Postgres restart would.
async fn terminate_database_connections(env: &TestEnv) {
    let admin = sqlx::PgPool::connect(&conveyor_testkit::database_url("postgres"))
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&env.database)
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

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

    // 10,000 events through the outbox, committed in 20 transactions while faults happen.
    let producer = {
        let pool = env.pool.clone();
        tokio::spawn(async move {
            for chunk in 0..20 {
                let events: Vec<_> = (chunk * 500..(chunk + 1) * 500).map(event).collect();
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
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    env.wait_for_handled(2_000, Duration::from_secs(60)).await;
    env.close_all_connections();
    env.wait_for_handled(5_000, Duration::from_secs(60)).await;
    terminate_database_connections(&env).await;
    env.wait_for_handled(7_000, Duration::from_secs(60)).await;
    env.close_all_connections();
    producer.await.unwrap();
    publisher
        .publish(&event(10_000))
        .await
        .expect("the publisher reconnects by itself");

    env.wait_for_handled(10_001, Duration::from_secs(120)).await;
    stop_relay.fire();
    relay.await.unwrap();
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (10_001, 10_001));
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 0);
}

#[tokio::test]
async fn sigterm_during_a_stream_loses_nothing() {
    let env = TestEnv::new().await;
    env.declare(&test_consumer(ConsumerOptions::default()).topology())
        .await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let events: Vec<_> = (0..5_000).map(event).collect();
    publisher.publish_events(&events).await.unwrap();

    let mut service = child::spawn("consumer", &env.database_url(), &env.amqp.url());
    env.wait_for_handled(200, Duration::from_secs(60)).await;
    child::send_signal(&service, "TERM");
    let exit = tokio::task::spawn_blocking(move || service.wait().unwrap())
        .await
        .unwrap();

    assert!(
        exit.success(),
        "the service exits cleanly on SIGTERM: {exit}"
    );
    let handled = env.handled_count().await;
    let waiting = i64::from(env.queue_len(&env.names.service_queue(SERVICE)).await);
    assert_eq!(
        handled + waiting,
        5_000,
        "every event is either handled or back in the queue, once"
    );
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    env.wait_for_handled(5_000, Duration::from_secs(60)).await;
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (5_000, 5_000));
}
