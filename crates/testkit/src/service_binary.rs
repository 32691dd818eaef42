//! A service binary as an operator meets it: its `--help`, its refusals of bad settings,
//! and a start and stop that log no error.

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::TestEnv;

/// Checks a service binary as an operator meets it: `--help` explains every setting it
/// reads, an argument is refused with a pointer to `--help`, and a setting that cannot work
/// stops it at once with an error naming the variable.
pub fn check_service_binary(binary: &str, service: &str) {
    let prefix = service.to_ascii_uppercase();
    let help = Command::new(binary).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{binary} --help failed: {text}");
    for variable in [
        "AMQP_URL".to_owned(),
        format!("{prefix}_DATABASE_URL"),
        format!("{prefix}_PORT"),
        "LISTEN_ADDR".to_owned(),
        "SHUTDOWN_TIMEOUT".to_owned(),
    ] {
        assert!(
            text.contains(&variable),
            "--help does not name {variable}: {text}"
        );
    }
    let stray = Command::new(binary).arg("--port=80").output().unwrap();
    let stderr = String::from_utf8_lossy(&stray.stderr);
    assert_eq!(stray.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--help"), "{stderr}");
    let bad = Command::new(binary)
        .env(format!("{prefix}_PORT"), "eighty")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{prefix}_PORT=\"eighty\" is not valid")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Lines that show a service is up: the HTTP server, the consumer (for a service that
/// consumes) and the relay all started.
const STARTED: [&str; 2] = ["Service started.", "This instance relays the outbox."];

/// Starts `binary` on a vhost and database of its own, waits until it is up (and, when
/// `consumes`, until its consumer connected), stops it with SIGTERM as a deploy does, and
/// checks that it exited 0 without one ERROR line: whoever alerts on errors must not be
/// paged by every start and stop.
pub async fn check_quiet_start_and_stop(binary: &str, service: &str, consumes: bool) {
    let env = TestEnv::new().await;
    let database = env.create_database(service).await;
    let prefix = service.to_ascii_uppercase();
    let mut child = tokio::process::Command::new(binary)
        .env("AMQP_URL", env.amqp.url())
        .env(format!("{prefix}_DATABASE_URL"), &database)
        .env(format!("{prefix}_PORT"), "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the service binary starts");
    let mut waiting: Vec<&str> = STARTED.to_vec();
    if consumes {
        waiting.push("Consumer connected.");
    }
    // The services log to standard error.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        while !waiting.is_empty() {
            let Ok(Some(line)) = lines.next_line().await else {
                return false;
            };
            waiting.retain(|started| !line.contains(started));
            log.push(line);
        }
        true
    })
    .await;
    assert!(
        up == Ok(true),
        "{service} did not start (still waiting for {waiting:?}): {log:#?}"
    );
    let pid = child.id().expect("the service runs").to_string();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the service stops within a minute of SIGTERM")
        .unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    assert!(status.success(), "{service} exited with {status}: {log:#?}");
    let error_lines: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        error_lines.is_empty(),
        "{service} logged errors on a normal start and stop: {error_lines:#?}"
    );
    assert!(
        log.iter().any(|line| line.contains("\"level\":\"INFO\"")),
        "the log was read (JSON lines at INFO): {log:#?}"
    );
}
