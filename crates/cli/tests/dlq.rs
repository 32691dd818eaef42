//! `conveyor dlq` run as an operator runs it, against dead letters made by a real failing
//! consumer on the real broker.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use conveyor_testkit::{SERVICE, TestEnv, fast_retries};
use serde_json::json;
use sha2::Digest;
use support::{
    dead_letter_ids, dlq, dlq_json, fail_through_a_consumer, ids_of, never, publish_all,
    statuses_of, until_fixed, wait_for_dead_letters,
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
    let statuses = statuses_of(&audit);
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

/// The rate is a ceiling the replay never beats, measured from outside: letters go in
/// chunks of a tenth of a second's worth (10 at 100/s), the k-th chunk not before k tenths,
/// so 200 at 100/s cannot all be sent in less than 1.9 s. (A slower run is not a failure: a
/// loaded machine may stall the tool, never speed it up.)
#[tokio::test]
async fn replay_holds_the_requested_rate() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(fast_retries()).await;
    let events: Vec<_> = (0..200).map(never).collect();
    publish_all(&env, &events).await;
    wait_for_dead_letters(&env, 200).await;
    consumer.stop().await;
    let letters: BTreeSet<String> = dead_letter_ids(&env).await.into_iter().collect();

    let started = std::time::Instant::now();
    let replayed = dlq_json(&env, &["replay", SERVICE, "--rate", "100/s", "--json"]);
    let took = started.elapsed();

    assert_eq!(replayed["done"], 200);
    assert!(
        took >= Duration::from_millis(1900),
        "200 letters at 100/s were replayed in {took:?}"
    );
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
    // The replay's copies carry its run id. The retry tiers dead-letter at least once, so a
    // copy of an event may also come back from a tier beside them (inboxes take it once).
    let (replayed, from_tiers): (Vec<_>, Vec<_>) = env
        .drain(&env.names.service_queue(SERVICE))
        .await
        .into_iter()
        .partition(|delivery| {
            let headers = delivery.properties.headers().clone().unwrap_or_default();
            conveyor::headers::get_str(&headers, conveyor::headers::REPLAY_RUN).is_some()
        });
    let id = |delivery: &lapin::message::Delivery| {
        conveyor::Envelope::from_bytes(&delivery.data)
            .unwrap()
            .id
            .to_string()
    };
    assert_eq!(replayed.len(), 200, "each letter is replayed once");
    let back: BTreeSet<String> = replayed.iter().map(id).collect();
    assert_eq!(back, letters, "every letter is back in the service's queue");
    assert!(
        from_tiers
            .iter()
            .all(|delivery| letters.contains(&id(delivery)))
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

/// Every filter's valid forms select exactly their letters, and `--raw` shows the body byte
/// for byte where the default shows it parsed.
#[tokio::test]
async fn each_filter_selects_exactly_its_letters_and_raw_shows_the_bytes() {
    let env = TestEnv::new().await;
    let flow = uuid::Uuid::new_v4();
    let refused = never(1);
    let exhausted =
        conveyor_testkit::event_with(2, json!({ "n": 2, "behaviour": { "transient-times": 99 } }))
            .with_correlation_id(flow);
    fail_through_a_consumer(&env, &[refused.clone(), exhausted.clone()])
        .await
        .stop()
        .await;
    let (refused_id, exhausted_id) = (refused.id.to_string(), exhausted.id.to_string());
    let flow_text = flow.to_string();
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let both = vec![refused_id.clone(), exhausted_id.clone()];
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec!["--error-kind", "permanent"], vec![refused_id.clone()]),
        (
            vec!["--error-kind", "retries-exhausted"],
            vec![exhausted_id.clone()],
        ),
        (vec!["--type", "test.happened"], both.clone()),
        (vec!["--type", "test.*"], both.clone()),
        (vec!["--type", "#.happened"], both.clone()),
        (vec!["--type", "order.*"], vec![]),
        (vec!["--id", &refused_id], vec![refused_id.clone()]),
        (
            vec!["--correlation-id", &flow_text],
            vec![exhausted_id.clone()],
        ),
        (vec!["--since", "1h"], both.clone()),
        (vec!["--until", "1h"], vec![]),
        (vec!["--until", &in_an_hour], both.clone()),
        (vec!["--since", &in_an_hour], vec![]),
    ];
    for (filter, expected) in cases {
        let mut args = vec!["show", SERVICE, "--limit", "10", "--json"];
        args.extend(&filter);
        let mut shown = ids_of(&dlq_json(&env, &args));
        shown.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(shown, expected, "show {filter:?}");
    }

    let id_filter = ["show", SERVICE, "--id", &refused_id, "--json"];
    let parsed = dlq_json(&env, &id_filter);
    let raw = dlq_json(&env, &[&id_filter[..], &["--raw"]].concat());
    assert_eq!(parsed["dead_letters"][0]["body"]["data"]["n"], 1);
    assert_eq!(
        raw["dead_letters"][0]["body"].as_str(),
        Some(String::from_utf8(refused.to_bytes()).unwrap().as_str()),
        "--raw shows the body as it was sent"
    );
}

/// A transfer the broker refuses stops with a clear error, leaves every letter where it was,
/// and the audit log says it failed and why.
#[tokio::test]
async fn a_move_the_broker_refuses_is_audited_as_failed_and_leaves_the_letters() {
    let env = TestEnv::new().await;
    let events: Vec<_> = (0..5).map(never).collect();
    fail_through_a_consumer(&env, &events).await.stop().await;
    let before = dead_letter_ids(&env).await;
    // A full queue that refuses what is published to it: the broker nacks each copy.
    env.refuse("parking").await;

    let output = dlq(
        &env,
        &["move", SERVICE, "--to", "refuses-parking", "--json"],
    );

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("stopped after 0 dead letters"), "{stderr}");
    assert_eq!(
        dead_letter_ids(&env).await,
        before,
        "every letter stays, in order"
    );
    let audit = dlq_json(&env, &["audit", "--json"]);
    let statuses = statuses_of(&audit);
    assert_eq!(statuses, [json!("started"), json!("failed")]);
    assert_eq!(audit[1]["command"], "move");
    assert_eq!(audit[1]["done"], 0);
    assert!(
        audit[1]["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "{}",
        audit[1]
    );
}

/// A `product.updated` with a price the schema refuses, put straight into the dead-letter
/// queue as a consumer would have left it.
async fn refused_price_letter(env: &TestEnv) -> conveyor::Envelope {
    env.declare(&conveyor_testkit::test_consumer(fast_retries()).topology())
        .await;
    let event = conveyor::Envelope::new(
        "inventory",
        "product.updated",
        json!({ "sku": "MUG-BLUE", "name": "Blue mug", "price_cents": -5, "currency": "EUR", "version": 2 }),
    );
    let mut table = lapin::types::FieldTable::default();
    conveyor::headers::set_str(&mut table, conveyor::headers::ERROR, "price below zero");
    conveyor::headers::set_str(&mut table, conveyor::headers::ERROR_KIND, "schema");
    let properties = lapin::BasicProperties::default()
        .with_message_id(event.id.to_string().into())
        .with_headers(table);
    env.put_dead_letters(vec![(event.to_bytes(), properties)])
        .await;
    event
}

#[tokio::test]
async fn an_edited_letter_goes_back_once_as_a_new_event_and_a_wrong_edit_is_refused_at_its_field() {
    let env = TestEnv::new().await;
    let original = refused_price_letter(&env).await;
    let id = original.id.to_string();
    let files = tempfile_dir();
    let write = |name: &str, data: serde_json::Value| {
        let path = files.join(name);
        std::fs::write(&path, data.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    };

    let shown = dlq(&env, &["edit", SERVICE, &id]);
    assert!(shown.status.success());
    let data: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(data["price_cents"], -5);

    let wrong = write(
        "wrong.json",
        json!({ "sku": "MUG-BLUE", "name": "Blue mug", "price_cents": "free", "currency": "EUR", "version": 2 }),
    );
    let refused = dlq(&env, &["edit", SERVICE, &id, "--data", &wrong]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("data.price_cents"), "{stderr}");

    let right = write(
        "right.json",
        json!({ "sku": "MUG-BLUE", "name": "Blue mug", "price_cents": 1450, "currency": "EUR", "version": 2 }),
    );
    let dry = dlq(&env, &["edit", SERVICE, &id, "--data", &right, "--dry-run"]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("/price_cents"));
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        1
    );

    let sent = dlq(&env, &["edit", SERVICE, &id, "--data", &right]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // Run again, it finds no letter: the edit went once.
    let again = dlq(&env, &["edit", SERVICE, &id, "--data", &right]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no dead letter"));
    assert_eq!(
        env.queue_len(&env.names.dead_letter_queue(SERVICE)).await,
        0
    );
    let copies = env.drain(&env.names.service_queue(SERVICE)).await;
    assert_eq!(copies.len(), 1);
    let copy = conveyor::Envelope::from_bytes(&copies[0].data).unwrap();
    assert_ne!(copy.id, original.id);
    assert_eq!(copy.causationid, Some(original.id));
    assert_eq!(
        (
            copy.event_type.as_str(),
            copy.source.as_str(),
            copy.subject.clone(),
            copy.correlationid
        ),
        (
            "product.updated",
            original.source.as_str(),
            original.subject.clone(),
            original.correlationid
        )
    );
    assert_eq!(copy.data["price_cents"], 1450);
    let audit = dlq_json(&env, &["audit", "--json"]);
    let edits: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["command"] == "edit" && record["status"] == "finished")
        .collect();
    assert_eq!(edits.len(), 1, "{audit}");
    assert_eq!(
        edits[0]["patch"],
        json!([{ "op": "replace", "path": "/price_cents", "value": 1450 }])
    );
    assert_eq!(edits[0]["copy_id"], json!(copy.id));
    std::fs::remove_dir_all(files).unwrap();
}

/// A folder of this test's own, removed when the process ends.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dlq-edit-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
