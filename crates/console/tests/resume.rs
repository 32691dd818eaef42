//! A gentle replay outlives the console that ran it: its state is its audit records, and a
//! console that starts resumes every replay whose start has no end.

use std::time::Duration;

use conveyor::dead_letter::audit::{self, AuditRecord, AuditStatus};
use conveyor::headers;
use conveyor_testkit::{SERVICE, TestEnv, event, fast_retries, wait_until};
use lapin::BasicProperties;
use lapin::types::FieldTable;
use operator_console::{Console, ConsoleSettings};
use uuid::Uuid;

/// Dead letters of events `0..count`, as a consumer with a bug (since fixed) left them.
async fn dead_letters(env: &TestEnv, count: i64) {
    let letters = (0..count)
        .map(|n| {
            let mut table = FieldTable::default();
            headers::set_str(&mut table, headers::ERROR, "bug: fixed since");
            headers::set_str(&mut table, headers::ERROR_KIND, "permanent");
            let event = event(n);
            let properties = BasicProperties::default()
                .with_message_id(event.id.to_string().into())
                .with_headers(table);
            (event.to_bytes(), properties)
        })
        .collect();
    env.put_dead_letters(letters).await;
}

/// What a console wrote before it was killed mid-replay: `statuses` for one gentle replay.
async fn left_behind(env: &TestEnv, statuses: &[AuditStatus]) -> Uuid {
    let run_id = Uuid::now_v7();
    for status in statuses {
        let record = AuditRecord {
            run_id: Some(run_id),
            rate_per_second: Some(100.0),
            mode: Some("gentle".to_owned()),
            ..AuditRecord::new(
                *status,
                "replay",
                SERVICE,
                env.names.service_queue(SERVICE),
                "olga (console)".to_owned(),
            )
        };
        audit::append(&env.amqp, &env.names, &record).await.unwrap();
    }
    run_id
}

async fn start_console(env: &TestEnv) -> conveyor::ShutdownTrigger {
    let settings = ConsoleSettings {
        listen_addr: [127, 0, 0, 1].into(),
        port: 0,
        // No sign-in here: the resumption needs none.
        users_url: "http://127.0.0.1:1".to_owned(),
        amqp: env.amqp.clone(),
        names: env.names.clone(),
        database_urls: [(SERVICE.to_owned(), env.database_url())].into(),
        service_urls: std::collections::BTreeMap::new(),
        logs_url: None,
        traces_url: None,
    };
    let console = Console::bind(settings).await.unwrap();
    let (trigger, shutdown) = conveyor::Shutdown::new();
    tokio::spawn(console.run(shutdown));
    trigger
}

/// The records of `run_id` in the audit log, oldest first.
async fn records_of(env: &TestEnv, run_id: Uuid) -> Vec<AuditRecord> {
    let log = audit::read(&env.amqp, &env.names, 1000).await.unwrap();
    log.records
        .into_iter()
        .filter(|record| record.run_id == Some(run_id))
        .collect()
}

#[tokio::test]
async fn a_console_resumes_a_replay_another_left_unfinished_and_keeps_a_paused_one_paused() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    dead_letters(&env, 3).await;
    let paused = left_behind(&env, &[AuditStatus::Started, AuditStatus::Paused]).await;
    let running = left_behind(&env, &[AuditStatus::Started]).await;

    let stop = start_console(&env).await;
    let ended = wait_until(Duration::from_secs(60), || async {
        records_of(&env, running)
            .await
            .last()
            .is_some_and(|record| record.status == AuditStatus::Finished)
    })
    .await;
    assert!(ended, "the unfinished replay was not resumed to its end");
    let end = records_of(&env, running).await.pop().unwrap();
    assert_eq!(
        end.outcome.as_deref(),
        Some("drained: no matching letter left")
    );
    assert_eq!(end.done, Some(3));
    assert_eq!(env.handled_and_distinct().await, (3, 3));
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
    // The paused one was taken up paused: no end, nothing more written for it.
    let records = records_of(&env, paused).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[1].status, AuditStatus::Paused);
    stop.fire();
    consumer.stop().await;
}
