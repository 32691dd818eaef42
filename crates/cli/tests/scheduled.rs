//! `conveyor scheduled list` run as an operator runs it, on a service database holding a
//! deadline and a calendar time, one of them due.

use std::process::Command;
use std::time::Duration;

use conveyor::Outbox;
use conveyor_testkit::{TestEnv, event};
use serde_json::Value;

fn scheduled_list(env: &TestEnv, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["scheduled", "list", "--service", "orders", "--json"])
        .args(args)
        .env("ORDERS_DATABASE_URL", env.database_url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "conveyor scheduled list {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn scheduled_events_are_listed_earliest_first_and_the_due_ones_apart() {
    let env = TestEnv::new().await;
    let mut tx = env.pool.begin().await.unwrap();
    let outbox = Outbox::new();
    outbox
        .add_after(&mut tx, &event(1), Duration::from_secs(3600))
        .await
        .unwrap();
    let due_a_minute_ago = chrono::Utc::now() - chrono::Duration::minutes(1);
    outbox
        .add_at(&mut tx, &event(2), due_a_minute_ago)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let all = scheduled_list(&env, &[]);
    assert_eq!(all["service"], "orders");
    assert_eq!(
        (all["count"].as_i64(), all["due"].as_i64()),
        (Some(2), Some(1))
    );
    let subjects: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["item-2", "item-1"], "earliest due first");
    assert_eq!(all["events"][1]["counts_watched_time_only"], true);

    let due = scheduled_list(&env, &["--due"]);
    assert_eq!(due["events"].as_array().unwrap().len(), 1);
    assert_eq!(due["events"][0]["subject"], "item-2");
}
