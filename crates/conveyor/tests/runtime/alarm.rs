//! A broker memory alarm while a consumer has transient failures. The alarm is raised on
//! the test cluster of `scripts/cluster-up` (it blocks every publisher of a broker, so it
//! must not touch the broker the other tests share).

use std::process::Command;
use std::time::{Duration, Instant};

use conveyor_testkit::{
    Broker, FaultLock, TestEnv, event, event_with, fast_retries, test_consumer,
};
use serde_json::json;

/// The watermark that raises the alarm: a ten-millionth of the machine's memory, which every
/// node already uses.
const ALARMING_WATERMARK: &str = "0.0000001";

/// RabbitMQ's default watermark, what a node left alarmed by a killed run is given back.
const DEFAULT_WATERMARK: &str = "0.4";

/// A watermark below this fraction is taken for one a killed run of this test left behind:
/// no broker the tests run on is configured this low on purpose.
const LEFT_BEHIND_BELOW: f64 = 0.1;

/// How long a healed node may take to lift its alarm.
const ALARM_LIFT_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's memory high watermark as `vm_memory_monitor` holds it, an Erlang term: a
/// fraction (`0.4`), `{absolute,Bytes}` or `{relative,Fraction}`. Read and written with
/// `rabbitmqctl eval` (RabbitMQ 3.10 and later) rather than `set_vm_memory_high_watermark`,
/// which takes only a fraction or an absolute amount in its own syntax: whatever form a
/// node had, it gets back the very term it had.
fn watermark(broker: &Broker, node: &str) -> String {
    broker
        .ctl_on(
            Some(node),
            &["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."],
        )
        .trim()
        .to_owned()
}

fn set_watermark(broker: &Broker, node: &str, term: &str) {
    broker.ctl_on(Some(node), &["eval", &set_expression(term)]);
}

fn set_expression(term: &str) -> String {
    format!("vm_memory_monitor:set_vm_memory_high_watermark({term}).")
}

/// The fraction of the machine's memory a watermark term stands for; `None` for an
/// absolute amount.
fn fraction(term: &str) -> Option<f64> {
    let term = term.trim();
    let fraction = term
        .strip_prefix("{relative,")
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(term);
    fraction.trim().parse().ok()
}

fn in_memory_alarm(broker: &Broker, node: &str) -> bool {
    broker
        .ctl_on(Some(node), &["eval", "rabbit_alarm:get_alarms()."])
        .contains("memory")
}

/// Lifts an alarm an earlier run left behind, before this run publishes anything.
///
/// `MemoryAlarm`'s `Drop` restores the watermarks only when the test's process lives to
/// unwind. A run killed by SIGKILL, or by a CI job's time limit, leaves every node at
/// `ALARMING_WATERMARK`: the cluster then blocks every publisher, so this test would hang on
/// its first publish, and so would every later test on the cluster (`saga::cluster`, another
/// binary). The caller holds `FaultLock`, which no run of this test releases while its
/// alarm is up (the lock dies with the process), so an alarm or a watermark this low seen
/// now can only be left over, never another run's live fault.
async fn lift_alarms_left_behind(broker: &Broker) {
    for node in &broker.nodes {
        let term = watermark(broker, node);
        let too_low = fraction(&term).is_some_and(|share| share < LEFT_BEHIND_BELOW);
        if too_low || in_memory_alarm(broker, node) {
            eprintln!(
                "{node}: memory alarm or watermark {term} left by an earlier run; setting {DEFAULT_WATERMARK}"
            );
            set_watermark(broker, node, DEFAULT_WATERMARK);
        }
    }
    let until = Instant::now() + ALARM_LIFT_TIMEOUT;
    for node in &broker.nodes {
        while in_memory_alarm(broker, node) {
            assert!(
                Instant::now() < until,
                "{node} is still in a memory alarm at watermark {}: the machine is short of \
                 memory, so every publisher on the cluster would block",
                watermark(broker, node)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A memory alarm on every node of `broker`, lifted when dropped (also when the test fails):
/// each node gets back the watermark it had before.
struct MemoryAlarm {
    /// Each node and its watermark before the alarm.
    previous: Vec<(String, String)>,
}

impl MemoryAlarm {
    async fn raise(broker: &Broker) -> Self {
        // Read before anything changes, so a failure half-way still restores every node.
        let previous = broker
            .nodes
            .iter()
            .map(|node| (node.clone(), watermark(broker, node)))
            .collect();
        let alarm = Self { previous };
        for node in &broker.nodes {
            broker.ctl_on(
                Some(node),
                &["set_vm_memory_high_watermark", ALARMING_WATERMARK],
            );
        }
        for node in &broker.nodes {
            while !in_memory_alarm(broker, node) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        alarm
    }
}

impl Drop for MemoryAlarm {
    /// Without `Broker::ctl_on`, which panics: a panic while the test already unwinds would
    /// abort the process before the other nodes are restored.
    fn drop(&mut self) {
        let mut failed = Vec::new();
        for (node, term) in &self.previous {
            let restored = Command::new("rabbitmqctl")
                .arg("-n")
                .arg(node)
                .args(["-q", "eval"])
                .arg(set_expression(term))
                .output()
                .is_ok_and(|output| output.status.success());
            if !restored {
                failed.push(format!("{node} (to {term})"));
            }
        }
        if !failed.is_empty() && !std::thread::panicking() {
            panic!(
                "the memory watermark could not be restored on {}; the next run of this test \
                 restores it",
                failed.join(", ")
            );
        }
    }
}

#[tokio::test]
async fn under_a_memory_alarm_a_consumer_keeps_acknowledging_and_loses_nothing() {
    let _faults = FaultLock::acquire();
    let broker = Broker::cluster();
    lift_alarms_left_behind(&broker).await;
    let env = TestEnv::on(broker).await;
    let mut options = fast_retries();
    options.publish_timeout = Duration::from_secs(2);
    env.declare(&test_consumer(options.clone()).topology())
        .await;
    // Four of 1,000 events fail once: their retry copies cannot be published while the
    // alarm lasts.
    for n in 0..1000 {
        let envelope = if n % 250 == 0 {
            event_with(n, json!({ "n": n, "behaviour": { "transient-times": 1 } }))
        } else {
            event(n)
        };
        env.publish(&envelope).await;
    }
    let alarm = MemoryAlarm::raise(&env.broker).await;
    let consumer = env.start_consumer(options).await;

    // While publishers are blocked, every event that does not fail is handled: the
    // consumer's acknowledgements do not wait behind its blocked retry copies.
    env.wait_for_handled(996, Duration::from_secs(90)).await;
    drop(alarm);
    env.wait_for_handled(1000, Duration::from_secs(60)).await;
    consumer.stop().await;

    assert_eq!(env.handled_and_distinct().await, (1000, 1000));
    let dead_letters = env.names.dead_letter_queue(conveyor_testkit::SERVICE);
    assert_eq!(env.queue_len(&dead_letters).await, 0);
}
