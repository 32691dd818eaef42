//! The operators' transfer of dead letters, driven through the runtime's API.

use conveyor::dead_letter::{Destination, Filter, TransferOptions, transfer};
use conveyor::headers;
use lapin::BasicProperties;
use lapin::types::FieldTable;

use conveyor_testkit::{SERVICE, TestEnv, event, fast_retries, test_consumer};

/// Puts `event(n)` straight into the dead-letter queue for each `(n, run)`, as sent by
/// replay run `run` if any, confirmed.
async fn dead_letters(env: &TestEnv, letters: &[(i64, Option<String>)]) {
    let connection = env.connect().await;
    let channel = conveyor::ConfirmChannel::open(&connection, &env.amqp.user())
        .await
        .unwrap();
    let messages: Vec<_> = letters
        .iter()
        .map(|(n, run)| {
            let mut table = FieldTable::default();
            headers::set_str(&mut table, headers::ERROR, "bug: still broken");
            headers::set_str(&mut table, headers::ERROR_KIND, "permanent");
            if let Some(run) = run {
                headers::set_str(&mut table, headers::REPLAY_RUN, run);
            }
            conveyor::OutgoingMessage {
                exchange: String::new(),
                routing_key: env.names.dead_letter_queue(SERVICE),
                body: event(*n).to_bytes(),
                properties: BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(table),
            }
        })
        .collect();
    channel.publish_all(&messages).await.unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn letters_this_run_already_sent_are_left_in_place_and_counted() {
    let env = TestEnv::new().await;
    env.declare(&test_consumer(fast_retries()).topology()).await;
    let run_id = uuid::Uuid::now_v7();
    let earlier_run = uuid::Uuid::now_v7().to_string();
    // Ten came back from this run, ten from an earlier one, ten were never replayed.
    let letters: Vec<_> = (0..30)
        .map(|n| {
            let run = match n % 3 {
                0 => Some(run_id.to_string()),
                1 => Some(earlier_run.clone()),
                _ => None,
            };
            (n, run)
        })
        .collect();
    dead_letters(&env, &letters).await;
    let options = TransferOptions {
        filter: Filter::default(),
        destination: Destination::Replay,
        rate: None,
        limit: None,
        window: TransferOptions::DEFAULT_WINDOW,
        run_id,
    };

    let report = transfer(&env.amqp, &env.names, SERVICE, &options, |_| {})
        .await
        .unwrap();

    assert_eq!(report.done, 20);
    assert_eq!(report.came_back, 10);
    assert!(!report.stopped_early);
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 20);
    let left = env.drain(&env.names.dead_letter_queue(SERVICE)).await;
    assert_eq!(left.len(), 10);
    for delivery in &left {
        let table = delivery.properties.headers().clone().unwrap_or_default();
        assert_eq!(
            headers::get_str(&table, headers::REPLAY_RUN),
            Some(run_id.to_string().as_str())
        );
    }
    // Every copy names the run that sent it, so a later pass or run can tell.
    for delivery in env.drain(&env.names.service_queue(SERVICE)).await {
        let table = delivery.properties.headers().clone().unwrap_or_default();
        assert_eq!(
            headers::get_str(&table, headers::REPLAY_RUN),
            Some(run_id.to_string().as_str())
        );
    }
}
