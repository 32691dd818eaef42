use std::time::Duration;

use conveyor::ConsumerOptions;

use conveyor_testkit::{SERVICE, TestEnv, event};

#[tokio::test]
async fn an_event_delivered_twice_is_applied_once() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    let twice = event(1);

    env.publish(&twice).await;
    env.publish(&twice).await;
    env.publish(&event(2)).await;

    env.wait_for_handled(2, Duration::from_secs(10)).await;
    let wait_for_duplicate = async {
        while consumer.stats.duplicates() < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait_for_duplicate)
        .await
        .expect("the second delivery is seen as a duplicate");
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (2, 2));
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 0);
}

#[tokio::test]
async fn a_batch_of_events_is_handled_once_each_and_acknowledged() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    let publisher = conveyor::Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let events: Vec<_> = (0..500).map(event).collect();

    publisher.publish_events(&events).await.unwrap();

    env.wait_for_handled(500, Duration::from_secs(30)).await;
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (500, 500));
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 0);
}
