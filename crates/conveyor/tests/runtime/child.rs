//! Runs part of the runtime in a child process, so tests can kill it for real (SIGKILL) or
//! stop it the way an orchestrator does (SIGTERM).

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use conveyor::{AmqpConfig, ConsumerOptions, Names, OutboxRelay, Shutdown};
use sqlx::PgPool;

use conveyor_testkit::test_consumer;

const ROLE: &str = "CONVEYOR_TEST_CHILD";
const DATABASE: &str = "CONVEYOR_TEST_CHILD_DATABASE_URL";
const BROKER: &str = "CONVEYOR_TEST_CHILD_AMQP_URL";

/// Starts this test binary again, running only [`child_process`] in the given role.
pub(crate) fn spawn(role: &str, database_url: &str, amqp_url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child::child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(ROLE, role)
        .env(DATABASE, database_url)
        .env(BROKER, amqp_url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for the child to exit; kills it and fails the test if it has not within `within`,
/// so a child that hangs is a red test, not a hung CI job.
pub(crate) async fn exit_within(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "a child process of other tests, started by them"]
async fn child_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let pool = PgPool::connect(&std::env::var(DATABASE).unwrap())
        .await
        .unwrap();
    let amqp = AmqpConfig::new(std::env::var(BROKER).unwrap(), format!("test child {role}"));
    let shutdown = Shutdown::from_future(conveyor::shutdown::signal());
    match role.as_str() {
        "relay" => {
            OutboxRelay::new(pool, amqp, Names::default())
                .run(shutdown)
                .await
        }
        "consumer" => {
            let options = ConsumerOptions {
                batch_size: 20,
                ..ConsumerOptions::default()
            };
            test_consumer(options).run(amqp, pool, shutdown).await;
        }
        other => panic!("unknown child role {other}"),
    }
}
