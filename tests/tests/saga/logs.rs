//! A service's JSON log lines, as an operator's log pipeline reads them.

use std::time::Duration;

use conveyor_testkit::TestEnv;
use serde_json::Value;
use system::ServiceName;

use crate::processes::ServiceProcess;

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_trace_of_the_request() {
    let env = TestEnv::new().await;
    let variables = vec![
        ("AMQP_URL".to_owned(), env.amqp.url()),
        (
            "USERS_DATABASE_URL".to_owned(),
            env.create_database("users").await,
        ),
        (
            "RUST_LOG".to_owned(),
            "info,lapin=warn,platform=debug".to_owned(),
        ),
    ];
    let users = ServiceProcess::spawn(ServiceName::USERS, &variables);
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let answer = reqwest::Client::new()
        .get(format!("{}/healthz", users.url))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());

    let mut answered = None;
    for _ in 0..50 {
        answered = users
            .log_lines()
            .into_iter()
            .find(|line| line.contains(&trace_id));
        if answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = users.log_lines();
    let answered =
        answered.unwrap_or_else(|| panic!("no line carries trace {trace_id}: {lines:#?}"));
    for line in &lines {
        serde_json::from_str::<Value>(line).unwrap_or_else(|error| panic!("{error}: {line}"));
    }
    let answered: Value = serde_json::from_str(&answered).unwrap();
    assert_eq!(answered["fields"]["message"], "Request answered.");
    assert_eq!(answered["fields"]["status"], 200);
    assert_eq!(answered["trace_id"], trace_id.as_str());
    assert_eq!(answered["span_id"].as_str().map(str::len), Some(16));
    assert_ne!(
        answered["span_id"], "00f067aa0ba902b7",
        "the request's own span"
    );
    assert_eq!(answered["service"], "users");
    users.stop().await;
}
