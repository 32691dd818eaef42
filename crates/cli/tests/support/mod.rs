//! What the `conveyor dlq` tests share: running the command as an operator does, and dead
//! letters made by a real failing consumer.
#![allow(dead_code)] // each test binary uses its own part

use std::process::{Command, Output};
use std::time::Duration;

use conveyor_testkit::{SERVICE, TestEnv, event_with};
use serde_json::{Value, json};

pub(crate) fn dlq(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .arg("dlq")
        .args(args)
        .env("AMQP_URL", env.amqp.url())
        .output()
        .unwrap()
}

/// Runs a dlq command that must succeed and print JSON.
pub(crate) fn dlq_json(env: &TestEnv, args: &[&str]) -> Value {
    let output = dlq(env, args);
    assert!(
        output.status.success(),
        "conveyor dlq {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{args:?} printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub(crate) fn until_fixed(n: i64) -> conveyor::Envelope {
    event_with(n, json!({ "n": n, "behaviour": "until-fixed" }))
}

pub(crate) fn never(n: i64) -> conveyor::Envelope {
    event_with(n, json!({ "n": n, "behaviour": "permanent" }))
}

pub(crate) async fn publish_all(env: &TestEnv, events: &[conveyor::Envelope]) {
    let publisher = conveyor::Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    publisher.publish_events(events).await.unwrap();
}

/// Starts the test consumer, publishes `events` and waits until each is a dead letter (or
/// handled, for those that succeed): the consumer keeps running.
pub(crate) async fn fail_through_a_consumer(
    env: &TestEnv,
    events: &[conveyor::Envelope],
) -> conveyor_testkit::RunningConsumer {
    let consumer = env.start_consumer(conveyor_testkit::fast_retries()).await;
    publish_all(env, events).await;
    wait_for_dead_letters(env, u32::try_from(events.len()).unwrap()).await;
    consumer
}

pub(crate) async fn wait_for_dead_letters(env: &TestEnv, count: u32) {
    let queue = env.names.dead_letter_queue(SERVICE);
    let wait = async {
        while env.queue_len(&queue).await < count {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("{count} dead letters expected in {queue}"));
}

/// The ids in the dead-letter queue, in queue order, read with basic.get (not by the tool).
pub(crate) async fn dead_letter_ids(env: &TestEnv) -> Vec<String> {
    let queue = env.names.dead_letter_queue(SERVICE);
    // Taken and put back through the default exchange in the same order, to leave it as it was.
    let taken = env.drain(&queue).await;
    let connection = env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    // With confirms: a quorum queue shows a message to readers once it has confirmed it.
    channel.confirm_select(Default::default()).await.unwrap();
    let mut ids = Vec::new();
    for delivery in &taken {
        let envelope = conveyor::Envelope::from_bytes(&delivery.data).unwrap();
        ids.push(envelope.id.to_string());
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                &delivery.data,
                delivery.properties.clone(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    connection.close(200, "done".into()).await.unwrap();
    ids
}

pub(crate) fn ids_of(report: &Value) -> Vec<String> {
    report["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| letter["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The status of each record of `conveyor dlq audit --json`, oldest first.
pub(crate) fn statuses_of(audit: &Value) -> Vec<Value> {
    audit
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["status"].clone())
        .collect()
}
