//! `conveyor dlq` run as an operator runs it, against dead letters made by a real failing
//! consumer on the real broker.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use conveyor_testkit::{SERVICE, TestEnv, fast_retries};
use serde_json::json;
use sha2::Digest;
use support::{
    dead_letter_ids, dlq, dlq_json, fail_through_a_consumer, ids_of, never, publish_all,
    until_fixed, wait_for_dead_letters,
};

#[tokio::test]
async fn dead_letters_are_listed_grouped_shown_and_replayed_once_the_bug_is_fixed() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let mut events: Vec<_> = (0..30).map(until_fixed).collect();
    events.extend((100..105).map(never));
    publish_all(&env, &events).await;
    wait_for_dead_letters(&env, 35).await;

    let listed = dlq_json(&env, &["list", "--json"]);
    let groups = dlq_json(&env, &["groups", SERVICE, "--json"]);
    let shown = dlq_json(
        &env,
        &[
            "show",
            SERVICE,
            "--error-contains",
            "BUG:",
            "--limit",
            "3",
            "--json",
        ],
    );

    let ledger = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["service"] == SERVICE)
        .unwrap();
    assert_eq!(ledger["messages"], 35);
    assert!(ledger["oldest_failure"].is_string());
    let groups = groups["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["count"], 30);
    assert_eq!(groups[0]["error_kind"], "permanent");
    assert_eq!(
        groups[0]["error"],
        "bug: cannot apply event <n> to account <n>"
    );
    assert_eq!(groups[1]["count"], 5);
    assert_eq!(shown["matching"], 30);
    let first = &shown["dead_letters"][0];
    assert_eq!(shown["dead_letters"].as_array().unwrap().len(), 3);
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .starts_with("bug: cannot apply event")
    );
    assert_eq!(first["type"], "test.happened");
    assert_eq!(first["body"]["data"]["behaviour"], "until-fixed");

    env.fix_the_bug().await;
    let bug_group = groups[0]["fingerprint"].as_str().unwrap();
    let bug_ids = ids_of(&dlq_json(
        &env,
        &[
            "show", SERVICE, "--group", bug_group, "--limit", "100", "--json",
        ],
    ));
    let replayed = dlq_json(&env, &["replay", SERVICE, "--group", bug_group, "--json"]);

    assert_eq!(replayed["done"], 30);
    assert_eq!(replayed["kept"], 5);
    env.wait_for_handled(30, Duration::from_secs(30)).await;
    // A copy sent twice would be absorbed by the inbox, and counted there.
    assert_eq!(consumer.stats.duplicates(), 0);
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (30, 30));
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        5
    );
    let audit = dlq_json(&env, &["audit", "--json"]);
    let statuses: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("started"), json!("finished")]);
    assert_eq!(audit[1]["command"], "replay");
    assert_eq!(audit[1]["done"], 30);
    assert_eq!(audit[1]["filters"]["group"], bug_group);
    assert_eq!(audit[1]["run_id"], audit[0]["run_id"]);
    // The record holds a digest of the ids replayed, in order, not the ids.
    let listing: String = bug_ids.iter().map(|id| format!("{id}\n")).collect();
    let digest: String = sha2::Sha256::digest(listing.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(audit[1]["ids_sha256"], digest.as_str());
    assert!(audit[1].get("ids").is_none());
}

#[tokio::test]
async fn a_replay_killed_halfway_and_run_again_handles_every_message_once() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let events: Vec<_> = (0..1000).map(until_fixed).collect();
    publish_all(&env, &events).await;
    wait_for_dead_letters(&env, 1000).await;
    env.fix_the_bug().await;

    let mut replay = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["dlq", "replay", SERVICE, "--rate", "400/s", "--json"])
        .env("AMQP_URL", env.amqp.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    env.wait_for_handled(150, Duration::from_secs(30)).await;
    replay.kill().unwrap();
    replay.wait().unwrap();
    env.wait_for_no_consumers(&env.names.dead_letter_queue(SERVICE))
        .await;
    let handled_at_kill = env.handled_count().await;
    let again = dlq_json(&env, &["replay", SERVICE, "--json"]);

    env.wait_for_handled(1000, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    consumer.stop().await;
    assert!(
        handled_at_kill < 1000,
        "the kill came too late to prove anything"
    );
    assert!(again["done"].as_u64().unwrap() > 0);
    assert_eq!(env.handled_and_distinct().await, (1000, 1000));
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 0);
}

#[tokio::test]
async fn filters_leave_non_matching_dead_letters_in_place_and_in_order() {
    let env = TestEnv::new().await;
    let events: Vec<_> = (0..40)
        .map(|n| if n % 3 == 0 { until_fixed(n) } else { never(n) })
        .collect();
    fail_through_a_consumer(&env, &events).await.stop().await;
    let before = dead_letter_ids(&env).await;
    let shown_first = ids_of(&dlq_json(
        &env,
        &["show", SERVICE, "--limit", "100", "--json"],
    ));
    let shown_again = ids_of(&dlq_json(
        &env,
        &["show", SERVICE, "--limit", "100", "--json"],
    ));
    let bugs: Vec<String> = ids_of(&dlq_json(
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

    let moved = dlq_json(
        &env,
        &["replay", SERVICE, "--error-contains", "bug", "--json"],
    );

    assert_eq!(shown_first, before, "show lists the queue in its order");
    assert_eq!(shown_again, before, "reading twice changes nothing");
    assert_eq!(bugs.len(), 14);
    assert_eq!(moved["done"], 14);
    let expected: Vec<String> = before.into_iter().filter(|id| !bugs.contains(id)).collect();
    assert_eq!(dead_letter_ids(&env).await, expected);
    assert_eq!(env.queue_len(&env.names.service_queue(SERVICE)).await, 14);
}

#[tokio::test]
async fn replay_holds_the_requested_rate() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let events: Vec<_> = (0..200).map(never).collect();
    publish_all(&env, &events).await;
    wait_for_dead_letters(&env, 200).await;
    consumer.stop().await;

    let replayed = dlq_json(&env, &["replay", SERVICE, "--rate", "100/s", "--json"]);

    assert_eq!(replayed["done"], 200);
    let rate = replayed["per_second"].as_f64().unwrap();
    assert!(
        (90.0..=110.0).contains(&rate),
        "asked for 100/s, got {rate:.1}/s"
    );
}

#[tokio::test]
async fn bad_arguments_get_a_clear_error_and_change_nothing() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let events: Vec<_> = (0..10).map(never).collect();
    publish_all(&env, &events).await;
    wait_for_dead_letters(&env, 10).await;
    consumer.stop().await;
    let before = dead_letter_ids(&env).await;

    let cases: [(&[&str], &str); 7] = [
        (
            &["show", "nosuch"],
            "there is no dead-letter queue nosuch.dlq",
        ),
        (&["replay", "Bad.Name"], "is not a service name"),
        (
            &["replay", SERVICE, "--error-kind", "transient"],
            "expected one of malformed, schema",
        ),
        (
            &["replay", SERVICE, "--since", "yesterday"],
            "neither an RFC 3339 time",
        ),
        (&["replay", SERVICE, "--rate", "fast"], "is not a rate"),
        (
            &["move", SERVICE, "--to", "parking-lot"],
            "queue parking-lot does not exist",
        ),
        (&["purge", SERVICE], "add --yes"),
    ];
    for (args, expected) in cases {
        let output = dlq(&env, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?} said: {stderr}");
    }

    assert_eq!(dead_letter_ids(&env).await, before);
    let audit = dlq_json(&env, &["audit", "--json"]);
    assert_eq!(audit, json!([]), "nothing was done, so nothing was audited");
    let dry_run = dlq_json(&env, &["purge", SERVICE, "--dry-run", "--json"]);
    assert_eq!(dry_run["would_move"], 10);
    assert_eq!(dead_letter_ids(&env).await, before);
}

#[tokio::test]
async fn move_and_purge_act_only_on_what_matches() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let events: Vec<_> = (0..12)
        .map(|n| if n % 2 == 0 { until_fixed(n) } else { never(n) })
        .collect();
    publish_all(&env, &events).await;
    wait_for_dead_letters(&env, 12).await;
    consumer.stop().await;
    let connection = env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            "parking-lot".into(),
            lapin::options::QueueDeclareOptions::durable(),
            Default::default(),
        )
        .await
        .unwrap();

    let moved = dlq_json(
        &env,
        &[
            "move",
            SERVICE,
            "--to",
            "parking-lot",
            "--error-contains",
            "bug",
            "--json",
        ],
    );
    let purged = dlq_json(&env, &["purge", SERVICE, "--yes", "--limit", "2", "--json"]);

    assert_eq!(moved["done"], 6);
    assert_eq!(purged["done"], 2);
    assert_eq!(env.queue_len("parking-lot").await, 6);
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        4
    );
    let parked = env.drain("parking-lot").await;
    let mut parked_numbers: Vec<_> = parked
        .iter()
        .map(|delivery| {
            let envelope = conveyor::Envelope::from_bytes(&delivery.data).unwrap();
            envelope.data["n"].as_i64().unwrap()
        })
        .collect();
    parked_numbers.sort_unstable();
    assert_eq!(parked_numbers, [0, 2, 4, 6, 8, 10], "the buggy ones moved");
    let headers = parked[0].properties.headers().clone().unwrap_or_default();
    assert_eq!(
        conveyor::headers::get_u32(&headers, conveyor::headers::REPLAY_COUNT),
        Some(1)
    );
    assert!(conveyor::headers::get_str(&headers, conveyor::headers::ERROR).is_none());
}
