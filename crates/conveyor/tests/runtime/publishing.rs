use std::time::Duration;

use conveyor::{Envelope, PublishError, Publisher};
use conveyor_testkit::TestEnv;
use serde_json::json;

#[tokio::test]
async fn an_event_no_queue_is_bound_for_is_kept_in_the_unrouted_queue() {
    let env = TestEnv::new().await;
    env.declare(&conveyor::Topology::shared(&env.names)).await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let orphan = Envelope::new("producer", "nobody.listens", json!({ "n": 1 }));

    publisher
        .publish(&orphan)
        .await
        .expect("the alternate exchange takes it");

    let unrouted = env.names.unrouted();
    let wait = async {
        while env.queue_len(&unrouted).await < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the event is kept");
    let kept = env.drain(&unrouted).await;
    assert_eq!(kept[0].data, orphan.to_bytes());
}

#[tokio::test]
async fn a_nack_from_the_broker_is_a_clear_error() {
    let env = TestEnv::new().await;
    env.declare(&conveyor::Topology::shared(&env.names)).await;
    // A full queue that refuses new messages makes the broker nack what is routed to it.
    env.refuse("test.refused").await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();

    let error = publisher
        .publish(&Envelope::new("producer", "test.refused", json!({})))
        .await
        .unwrap_err();

    assert!(matches!(error, PublishError::Nacked { .. }), "{error:?}");
    assert!(error.to_string().contains("was not stored"), "{error}");
}
