//! The operators' transfer of dead letters, driven through the runtime's API.

use conveyor::dead_letter::{Destination, Filter, TransferOptions, transfer};
use conveyor::headers;
use lapin::BasicProperties;
use lapin::types::FieldTable;

use conveyor_testkit::{SERVICE, TestEnv, event, fast_retries, test_consumer};

/// Puts `event(n)` straight into the dead-letter queue for each `(n, run)`, as sent by
/// replay run `run` if any, confirmed.
async fn dead_letters(env: &TestEnv, letters: &[(i64, Option<String>)]) {
    let letters = letters
        .iter()
        .map(|(n, run)| {
            let mut table = FieldTable::default();
            headers::set_str(&mut table, headers::ERROR, "bug: still broken");
            headers::set_str(&mut table, headers::ERROR_KIND, "permanent");
            if let Some(run) = run {
                headers::set_str(&mut table, headers::REPLAY_RUN, run);
            }
            let properties = BasicProperties::default().with_headers(table);
            (event(*n).to_bytes(), properties)
        })
        .collect();
    env.put_dead_letters(letters).await;
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
        one_per_flow: false,
        keep_ids: false,
        stop_on_came_back: false,
        stop: None,
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

/// Events that fail until the test fixes the bug, each of a flow of its own but the last
/// two, which share one.
fn broken_events(count: i64) -> Vec<conveyor::Envelope> {
    let shared = uuid::Uuid::now_v7();
    (0..count)
        .map(|n| {
            let event = conveyor_testkit::event_with(
                n,
                serde_json::json!({ "n": n, "behaviour": "until-fixed" }),
            );
            if n >= count - 2 {
                event.with_correlation_id(shared)
            } else {
                event
            }
        })
        .collect()
}

async fn gentle(
    env: &TestEnv,
    control: tokio::sync::watch::Receiver<conveyor::dead_letter::Control>,
) -> (
    conveyor::dead_letter::GentleReport,
    Vec<conveyor::dead_letter::GentleProgress>,
) {
    gentle_as(env, control, uuid::Uuid::now_v7()).await
}

async fn gentle_as(
    env: &TestEnv,
    control: tokio::sync::watch::Receiver<conveyor::dead_letter::Control>,
    run_id: uuid::Uuid,
) -> (
    conveyor::dead_letter::GentleReport,
    Vec<conveyor::dead_letter::GentleProgress>,
) {
    let options = conveyor::dead_letter::GentleOptions {
        filter: Filter::default(),
        rate: None,
        run_id,
        consumer: SERVICE.to_owned(),
    };
    let mut seen = Vec::new();
    let report = conveyor::dead_letter::gentle_replay(
        &env.amqp,
        &env.names,
        SERVICE,
        &env.pool,
        &options,
        control,
        |progress| seen.push(progress.clone()),
    )
    .await
    .unwrap();
    (report, seen)
}

#[tokio::test]
async fn a_gentle_replay_stops_after_one_letter_while_the_bug_is_there_then_drains_the_rest() {
    use conveyor::dead_letter::{Control, GentleEnd};
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let events = broken_events(9);
    let publisher = conveyor::Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    publisher.publish_events(&events).await.unwrap();
    let queue = env.names.dead_letter_queue(SERVICE);
    assert!(
        conveyor_testkit::wait_until(std::time::Duration::from_secs(30), || async {
            env.queue_len(&queue).await == 9
        })
        .await,
        "9 dead letters expected"
    );
    let (_running, control) = tokio::sync::watch::channel(Control::Run);

    // The bug is still there: the first letter fails again, and nothing else is sent.
    let (report, _) = gentle(&env, control.clone()).await;
    let GentleEnd::FailureCameBack(error) = &report.end else {
        panic!("the replay should stop on the failure: {report:?}");
    };
    assert!(error.contains("bug: cannot apply event"), "{error}");
    assert_eq!(
        (
            report.progress.sent,
            report.progress.came_back,
            report.progress.handled
        ),
        (1, 1, 0)
    );
    assert_eq!(env.queue_len(&queue).await, 9);
    assert_eq!(env.handled_count().await, 0);

    // Fixed: batches of 1, 2, 5 and 1 (the second letter of the shared flow waited for a
    // batch of its own) handle every letter once.
    env.fix_the_bug().await;
    let (report, seen) = gentle(&env, control).await;
    assert_eq!(report.end, GentleEnd::Drained, "{report:?}");
    assert_eq!(
        (
            report.progress.sent,
            report.progress.handled,
            report.progress.came_back
        ),
        (9, 9, 0)
    );
    assert_eq!(report.progress.batches, 4);
    assert!(seen.iter().all(|progress| progress.sent <= 9));
    assert_eq!(env.handled_and_distinct().await, (9, 9));
    assert_eq!(env.queue_len(&queue).await, 0);
    consumer.stop().await;
}

#[tokio::test]
async fn a_paused_gentle_replay_sends_nothing_and_a_cancel_ends_it() {
    use conveyor::dead_letter::{Control, GentleEnd};
    let env = TestEnv::new().await;
    env.declare(&test_consumer(fast_retries()).topology()).await;
    dead_letters(&env, &[(1, None), (2, None)]).await;
    let (pause, control) = tokio::sync::watch::channel(Control::Pause);
    let replay = tokio::spawn({
        let env_amqp = env.amqp.clone();
        let names = env.names.clone();
        let pool = env.pool.clone();
        async move {
            let options = conveyor::dead_letter::GentleOptions {
                filter: Filter::default(),
                rate: None,
                run_id: uuid::Uuid::now_v7(),
                consumer: SERVICE.to_owned(),
            };
            conveyor::dead_letter::gentle_replay(
                &env_amqp,
                &names,
                SERVICE,
                &pool,
                &options,
                control,
                |_| {},
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let queue = env.names.dead_letter_queue(SERVICE);
    assert_eq!(
        env.queue_len(&queue).await,
        2,
        "a paused replay sent letters"
    );
    pause.send(Control::Cancel).unwrap();
    let report = replay.await.unwrap().unwrap();
    assert_eq!(report.end, GentleEnd::Cancelled);
    assert_eq!(report.progress.sent, 0);
    assert_eq!(env.queue_len(&queue).await, 2);
}

#[tokio::test]
async fn a_resumed_gentle_replay_stops_on_its_letters_that_came_back_meanwhile() {
    use conveyor::dead_letter::{Control, GentleEnd};
    let env = TestEnv::new().await;
    env.declare(&test_consumer(fast_retries()).topology()).await;
    let run_id = uuid::Uuid::now_v7();
    // Letter 1 is back from this replay's interrupted batch; letter 2 was never sent.
    dead_letters(&env, &[(1, Some(run_id.to_string())), (2, None)]).await;
    let (_running, control) = tokio::sync::watch::channel(Control::Run);
    let (report, _) = gentle_as(&env, control, run_id).await;
    assert!(
        matches!(report.end, GentleEnd::FailureCameBack(_)),
        "{report:?}"
    );
    assert_eq!((report.progress.sent, report.progress.came_back), (0, 1));
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        2
    );
}

#[tokio::test]
async fn a_gentle_replay_leaves_letters_without_an_id_and_ends() {
    use conveyor::dead_letter::{Control, GentleEnd};
    let env = TestEnv::new().await;
    env.declare(&test_consumer(fast_retries()).topology()).await;
    env.put_dead_letters(vec![(b"not an event".to_vec(), BasicProperties::default())])
        .await;
    let (_running, control) = tokio::sync::watch::channel(Control::Run);
    let (report, _) =
        tokio::time::timeout(std::time::Duration::from_secs(60), gentle(&env, control))
            .await
            .expect("a letter without an id must not hold the replay");
    assert_eq!(report.end, GentleEnd::Drained);
    assert_eq!(report.progress.sent, 0);
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        1
    );
}
