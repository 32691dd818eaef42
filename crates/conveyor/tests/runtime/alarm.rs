//! A broker memory alarm while a consumer has transient failures. The alarm is raised on
//! the test cluster of `scripts/cluster-up` (it blocks every publisher of a broker, so it
//! must not touch the broker the other tests share).

use std::time::Duration;

use conveyor_testkit::{Broker, TestEnv, event, event_with, fast_retries, test_consumer};
use serde_json::json;

/// A memory alarm on every node of `broker`, lifted (the watermark back to RabbitMQ's
/// default) when dropped, also when the test fails.
struct MemoryAlarm<'a> {
    broker: &'a Broker,
}

impl<'a> MemoryAlarm<'a> {
    async fn raise(broker: &'a Broker) -> Self {
        let alarm = Self { broker };
        for node in &broker.nodes {
            broker.ctl_on(Some(node), &["set_vm_memory_high_watermark", "0.0000001"]);
        }
        for node in &broker.nodes {
            while !broker
                .ctl_on(Some(node), &["eval", "rabbit_alarm:get_alarms()."])
                .contains("memory")
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        alarm
    }
}

impl Drop for MemoryAlarm<'_> {
    fn drop(&mut self) {
        for node in &self.broker.nodes {
            self.broker
                .ctl_on(Some(node), &["set_vm_memory_high_watermark", "0.4"]);
        }
    }
}

#[tokio::test]
async fn under_a_memory_alarm_a_consumer_keeps_acknowledging_and_loses_nothing() {
    let env = TestEnv::on(Broker::cluster()).await;
    let mut options = fast_retries();
    options.publish_timeout = Duration::from_secs(2);
    env.declare(&test_consumer(options.clone()).topology())
        .await;
    // Four of 1,000 events fail once: their retry copies cannot be published while the
    // alarm lasts.
    for n in 0..1000 {
        let envelope = if n % 250 == 0 {
            event_with(n, json!({ "n": n, "behaviour": { "transient-times": 1 } }))
        } else {
            event(n)
        };
        env.publish(&envelope).await;
    }
    let alarm = MemoryAlarm::raise(&env.broker).await;
    let consumer = env.start_consumer(options).await;

    // While publishers are blocked, every event that does not fail is handled: the
    // consumer's acknowledgements do not wait behind its blocked retry copies.
    env.wait_for_handled(996, Duration::from_secs(90)).await;
    drop(alarm);
    env.wait_for_handled(1000, Duration::from_secs(60)).await;
    consumer.stop().await;

    assert_eq!(env.handled_and_distinct().await, (1000, 1000));
    let dead_letters = env.names.dead_letter_queue(conveyor_testkit::SERVICE);
    assert_eq!(env.queue_len(&dead_letters).await, 0);
}
