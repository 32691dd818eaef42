//! A broker that an older release set up: queues declared with other arguments must not
//! stop a service from starting, and are upgraded where no message can be lost.

use std::time::Duration;

use conveyor::ConsumerOptions;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use conveyor_testkit::{SERVICE, TestEnv, event, test_consumer};

/// A classic retry tier, as releases before quorum tiers declared it.
async fn declare_classic_retry_tier(channel: &lapin::Channel, queue: &str, ttl: i64, target: &str) {
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(target.into()),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .unwrap();
}

#[tokio::test]
async fn queues_of_an_older_release_are_upgraded_when_safe_and_kept_otherwise() {
    let env = TestEnv::new().await;
    let names = &env.names;
    let service_queue = names.service_queue(SERVICE);
    let empty_tier = names.retry_queue(SERVICE, Duration::from_secs(1));
    let busy_tier = names.retry_queue(SERVICE, Duration::from_secs(10));
    let connection = env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    declare_classic_retry_tier(&channel, &empty_tier, 1000, &service_queue).await;
    declare_classic_retry_tier(&channel, &busy_tier, 3_600_000, &service_queue).await;
    channel
        .basic_publish(
            "".into(),
            busy_tier.as_str().into(),
            BasicPublishOptions::default(),
            &event(1).to_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();

    let consumer = test_consumer(ConsumerOptions::default());
    consumer.topology().declare(&connection).await.unwrap();

    assert_eq!(env.queue_type(&empty_tier), "quorum");
    assert_eq!(
        env.queue_type(&busy_tier),
        "classic",
        "a tier still holding a retry is kept"
    );
    assert_eq!(env.queue_len(&busy_tier).await, 1);
    // The service starts and works on the half-upgraded broker.
    let running = env.start_consumer(ConsumerOptions::default()).await;
    env.publish(&event(2)).await;
    env.wait_for_handled(1, Duration::from_secs(15)).await;
    running.stop().await;
    connection.close(200, "done".into()).await.unwrap();
}
