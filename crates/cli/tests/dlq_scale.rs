//! `conveyor dlq` on queues too large to hold, transfers longer than a window, and two
//! operators at once.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conveyor_testkit::{SERVICE, TestEnv, event, fast_retries, test_consumer};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use support::{
    dead_letter_ids, dlq, dlq_json, fail_through_a_consumer, ids_of, never, until_fixed,
};

const MIB: u64 = 1024 * 1024;

/// Loads `count` dead letters straight into the service's dead-letter queue, as a failing
/// consumer would have left them: every hundredth a timeout, the rest a bug.
async fn load_dead_letters(env: &TestEnv, count: u64) {
    env.declare(&test_consumer(fast_retries()).topology()).await;
    let queue = env.names.dead_letter_queue(SERVICE);
    let connection = env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let failed_at = chrono::Utc::now().to_rfc3339();
    for start in (0..count).step_by(5000) {
        let mut confirms = Vec::with_capacity(5000);
        for n in start..(start + 5000).min(count) {
            let error = if n % 100 == 0 {
                format!("timeout talking to the ledger after {n} ms")
            } else {
                format!("bug: cannot apply event {n}")
            };
            let mut headers = FieldTable::default();
            conveyor::headers::set_str(&mut headers, conveyor::headers::ERROR, &error);
            conveyor::headers::set_str(&mut headers, conveyor::headers::ERROR_KIND, "permanent");
            conveyor::headers::set_str(&mut headers, conveyor::headers::SERVICE, SERVICE);
            conveyor::headers::set_str(&mut headers, conveyor::headers::FAILED_AT, &failed_at);
            let envelope = event(i64::try_from(n).unwrap());
            let body = envelope.to_bytes();
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    // As Conveyor's publishers send them: the envelope's ids as properties.
                    BasicProperties::default()
                        .with_message_id(envelope.id.to_string().into())
                        .with_type(envelope.event_type.clone().into())
                        .with_correlation_id(envelope.correlationid.to_string().into())
                        .with_delivery_mode(2)
                        .with_headers(headers),
                )
                .await
                .unwrap();
            confirms.push(confirm);
        }
        for confirm in futures_util::future::join_all(confirms).await {
            assert!(
                confirm.unwrap().is_ack(),
                "the broker refused a dead letter"
            );
        }
    }
    connection.close(200, "loaded".into()).await.unwrap();
}

/// Runs a dlq command to its end, sampling its peak resident memory (VmHWM) as it goes.
fn dlq_json_with_peak_memory(env: &TestEnv, args: &[&str]) -> (Value, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .arg("dlq")
        .args(args)
        .env("AMQP_URL", env.amqp.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        // The file goes once the process is reaped, after its last sample was taken.
        while let Ok(status) = std::fs::read_to_string(&status_file) {
            let high_water = status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            match high_water {
                Some(kib) => peak = peak.max(kib * 1024),
                None => break, // a zombie: it has exited
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let output = child.wait_with_output().unwrap();
    let peak = sampler.join().unwrap();
    assert!(
        output.status.success(),
        "conveyor dlq {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{args:?} printed no JSON ({error})");
    });
    (report, peak)
}

#[tokio::test]
#[ignore = "loads the broker for minutes: scripts/test runs it alone, after the rest"]
async fn a_million_dead_letters_are_listed_grouped_and_replayed_by_filter_in_bounded_memory() {
    const LETTERS: u64 = 1_000_000;
    let env = TestEnv::new().await;
    let timer = std::time::Instant::now();
    load_dead_letters(&env, LETTERS).await;
    eprintln!("loaded {LETTERS} dead letters in {:?}", timer.elapsed());
    let dead_letter_queue = env.names.dead_letter_queue(SERVICE);
    assert_eq!(u64::from(env.queue_len(&dead_letter_queue).await), LETTERS);

    let timer = std::time::Instant::now();
    let (listed, list_peak) = dlq_json_with_peak_memory(&env, &["list", "--json"]);
    eprintln!("dlq list: {:?}", timer.elapsed());
    let (groups, groups_peak) = dlq_json_with_peak_memory(&env, &["groups", SERVICE, "--json"]);
    eprintln!("dlq groups: {:?}", timer.elapsed());
    let (replayed, replay_peak) = dlq_json_with_peak_memory(
        &env,
        &[
            "replay",
            SERVICE,
            "--error-contains",
            "timeout",
            "--limit",
            "2000",
            "--json",
        ],
    );
    eprintln!("dlq replay: {:?} {replayed}", timer.elapsed());

    assert_eq!(listed[0]["messages"], LETTERS);
    assert_eq!(groups["complete"], true);
    assert_eq!(groups["total"], LETTERS);
    let counts: Vec<_> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| (group["count"].as_u64().unwrap(), group["error"].clone()))
        .collect();
    assert_eq!(
        counts,
        [
            (990_000, "bug: cannot apply event <n>".into()),
            (10_000, "timeout talking to the ledger after <n> ms".into()),
        ]
    );
    assert_eq!(replayed["done"], 2_000);
    assert_eq!(replayed["kept"], 998_000);
    assert_eq!(
        env.queue_len(&env.names.service_queue(SERVICE)).await,
        2_000
    );
    for (command, peak) in [
        ("list", list_peak),
        ("groups", groups_peak),
        ("replay", replay_peak),
    ] {
        assert!(
            peak > 0 && peak < 200 * MIB,
            "dlq {command} peaked at {} MiB",
            peak / MIB
        );
        eprintln!("dlq {command}: peak resident memory {} MiB", peak / MIB);
    }
}

#[tokio::test]
async fn a_transfer_longer_than_its_window_gives_the_queue_back_and_goes_on() {
    let env = TestEnv::new().await;
    let events: Vec<_> = (0..60)
        .map(|n| if n % 2 == 0 { until_fixed(n) } else { never(n) })
        .collect();
    let consumer = fail_through_a_consumer(&env, &events).await;
    env.fix_the_bug().await;
    let before = dead_letter_ids(&env).await;
    let bugs = ids_of(&dlq_json(
        &env,
        &[
            "show",
            SERVICE,
            "--error-contains",
            "bug",
            "--limit",
            "100",
            "--json",
        ],
    ));

    let replayed = dlq_json(
        &env,
        &[
            "replay",
            SERVICE,
            "--error-contains",
            "bug",
            "--rate",
            "20/s",
            "--window",
            "1s",
            "--json",
        ],
    );

    env.wait_for_handled(30, Duration::from_secs(30)).await;
    assert_eq!(consumer.stats.duplicates(), 0);
    consumer.stop().await;
    assert_eq!(replayed["done"], 30);
    assert!(
        replayed["passes"].as_u64().unwrap() >= 2,
        "30 letters at 20/s take longer than one 1 s window: {replayed}"
    );
    assert_eq!(env.handled_and_distinct().await, (30, 30));
    let expected: Vec<String> = before.into_iter().filter(|id| !bugs.contains(id)).collect();
    assert_eq!(
        dead_letter_ids(&env).await,
        expected,
        "the rest kept their order"
    );
}

fn spawn_slow_replay(env: &TestEnv) -> Child {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["dlq", "replay", SERVICE, "--rate", "2/s", "--json"])
        .env("AMQP_URL", env.amqp.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_second_operator_is_told_another_holds_the_queue_and_nothing_is_done() {
    let env = TestEnv::new().await;
    let events: Vec<_> = (0..50).map(never).collect();
    fail_through_a_consumer(&env, &events).await.stop().await;
    let queue = env.names.dead_letter_queue(SERVICE);
    let mut first = spawn_slow_replay(&env);
    let holding = async {
        while env.consumer_count(&queue).await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), holding)
        .await
        .expect("the first replay never began reading");

    let shown = dlq(&env, &["show", SERVICE, "--json"]);
    let second = dlq(&env, &["purge", SERVICE, "--yes", "--json"]);
    first.kill().unwrap();
    first.wait().unwrap();

    for (command, output) in [("show", &shown), ("purge", &second)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command} should fail: {stderr}");
        assert!(
            stderr.contains("another reader holds messages"),
            "{command} said: {stderr}"
        );
    }
    env.wait_for_no_consumers(&queue).await;
    let audit = dlq_json(&env, &["audit", "--json"]);
    let commands: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["command"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(commands, ["replay"], "the refused purge left no record");
}
