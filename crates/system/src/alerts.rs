//! The alerts that tell an operator something needs them, so nobody has to watch a page:
//! one list, written as Prometheus rules (`observability/alerts.yml`, by `conveyor deploy`),
//! as the book's runbooks (`conveyor reference`) and as the console's runbook page. Rules
//! that name a flow or a queue come from the flows' declarations and the topology's names.

use std::fmt::Write as _;

use conveyor::Names;

use crate::flow_roster::all_flows;

/// How long past a flow's deadline a run may still be going before it is called stuck: its
/// deadline event is scheduled, so a run still going then waits on something that is down.
const STUCK_GRACE_SECONDS: u64 = 60;

/// One alert, with what it means and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Its name in Prometheus (`ConveyorOutboxParked`).
    pub name: String,
    /// Its anchor on the runbook pages (`conveyor-outbox-parked`).
    pub anchor: String,
    /// The PromQL that fires it.
    pub expr: String,
    /// How long the expression must hold (`2m`).
    pub hold: &'static str,
    /// The one line the alert says, a Prometheus template over its labels.
    pub summary: String,
    /// What is wrong when it fires.
    pub meaning: String,
    /// What to do, in order.
    pub steps: Vec<String>,
}

fn alert(name: &str, expr: String, hold: &'static str, summary: &str) -> Alert {
    Alert {
        anchor: anchor_of(name),
        name: name.to_owned(),
        expr,
        hold,
        summary: summary.to_owned(),
        meaning: String::new(),
        steps: Vec::new(),
    }
}

impl Alert {
    fn means(mut self, meaning: &str) -> Self {
        meaning.clone_into(&mut self.meaning);
        self
    }

    fn then(mut self, steps: &[&str]) -> Self {
        self.steps = steps.iter().map(|step| (*step).to_owned()).collect();
        self
    }
}

/// `ConveyorOutboxParked` → `conveyor-outbox-parked`.
fn anchor_of(name: &str) -> String {
    let mut anchor = String::new();
    for (index, letter) in name.chars().enumerate() {
        if letter.is_ascii_uppercase() && index > 0 {
            anchor.push('-');
        }
        anchor.push(letter.to_ascii_lowercase());
    }
    anchor
}

/// Every alert, for a system with `names` (a prefix names its unrouted queue).
pub fn alerts(names: &Names) -> Vec<Alert> {
    let mut alerts = vec![
        alert(
            "ConveyorOutboxParked",
            "max by (service) (conveyor_outbox_parked) > 0".to_owned(),
            "1m",
            "{{ $labels.service }} has parked {{ $value }} outbox rows the broker will never take",
        )
        .means("The service's relay gave up on events the broker refused every time (a body over the broker's limit, a routing key its user may not publish): they stay in its outbox, unsent, and every flow waiting on them waits.")
        .then(&[
            "List them: `conveyor outbox parked --service SERVICE` (the console's Flows page names the runs waiting on them).",
            "Fix the cause the refusal names: the broker user's topic permissions (`conveyor topology users`), or the broker's `max_message_size`.",
            "Send them again: `conveyor outbox unpark --service SERVICE --all`.",
        ]),
        alert(
            "ConveyorOutboxStale",
            "max by (service) (conveyor_outbox_oldest_unsent_age_seconds) > 60".to_owned(),
            "2m",
            "the oldest unsent event of {{ $labels.service }} is {{ $value | humanizeDuration }} old",
        )
        .means("Events committed by the service are not reaching the broker: its relay is stopped, the broker refuses connections (down, or a memory or disk alarm), or the relay cannot keep up.")
        .then(&[
            "Check the broker: `rabbitmq-diagnostics -q alarms` and `check_running`.",
            "Check the service's log for the relay's errors, and its `/readyz`.",
            "Nothing is lost meanwhile: the rows stay in the outbox until the broker confirms them.",
        ]),
        alert(
            "ConveyorDeadLettersGrowing",
            "sum by (service, event_type) (increase(conveyor_events_consumed_total{outcome=\"dead_lettered\"}[10m])) > 0".to_owned(),
            "0m",
            "{{ $labels.service }} dead-lettered {{ $value }} {{ $labels.event_type }} events in 10 minutes",
        )
        .means("The service's consumer gave up on events: malformed or off-contract ones, a handler's permanent error, or retries exhausted. Each waits in SERVICE.dlq, and the flow it belongs to waits on it.")
        .then(&[
            "Open the service's dead letters in the console (or `conveyor dlq groups SERVICE`) and read the largest group's error.",
            "Fix the cause (a deploy, a setting, the data).",
            "Replay the group gently from the console: it stops by itself after one letter if the cause is still there.",
        ]),
        alert(
            "ConveyorConsumerLag",
            "max by (service) (conveyor_consumer_lag_messages) > 1000".to_owned(),
            "5m",
            "{{ $labels.service }} has {{ $value }} events waiting in its queue",
        )
        .means("Events arrive faster than the service handles them, or it has stopped consuming: flows slow down and their deadlines come closer.")
        .then(&[
            "Check that the service's instances run and are ready (the console's overview counts its consumers).",
            "Look for a slow handler or a database under load; add instances (the runtime's key locks keep them correct).",
        ]),
        alert(
            "ConveyorBreakerOpen",
            "max by (service) (conveyor_gateway_breaker_open) > 0".to_owned(),
            "1m",
            "the gateway holds calls to {{ $labels.service }} back: its circuit breaker is open",
        )
        .means("Calls from the gateway to the service failed or timed out several times in a row; the gateway answers without calling it until a probe succeeds, so users see partial summaries.")
        .then(&[
            "Check the service's `/readyz` and log; restart it if it is down.",
            "The breaker closes by itself on the first call that succeeds after its cool-down.",
        ]),
        alert(
            "ConveyorUnrouted",
            format!(
                "max(rabbitmq_detailed_queue_messages{{queue=\"{}\"}}) > 0",
                names.unrouted()
            ),
            "1m",
            "{{ $value }} events reached no queue",
        )
        .means("Events were published with a routing key no queue is bound for: a type that no service subscribes to and the contract does not know, or a topology that was not applied.")
        .then(&[
            "Look at them in the broker's management UI (the queue of the same name), with their routing keys.",
            "Apply the topology (`conveyor topology apply`), or fix the publisher's event type.",
        ]),
    ];
    for flow in all_flows() {
        let limit = flow.deadline.default.as_secs() + STUCK_GRACE_SECONDS;
        alerts.push(
            alert(
                &format!("ConveyorFlowStuck{}", upper_first(flow.name)),
                format!(
                    "max(conveyor_flow_oldest_run_age_seconds{{flow=\"{}\"}}) > {limit}",
                    flow.name
                ),
                "1m",
                &format!(
                    "a run of the {} flow has been going for {{{{ $value | humanizeDuration }}}}, past its deadline",
                    flow.name
                ),
            )
            .means(&format!(
                "A run of the {} flow is still going {STUCK_GRACE_SECONDS} s after its deadline ({} s by default; {} sets it), so even the event that ends it at the deadline was not handled: the service that keeps it ({}) or the broker is down, or the run waits on a dead letter or a parked event.",
                flow.name,
                flow.deadline.default.as_secs(),
                flow.deadline.setting,
                flow.runs.service,
            ))
            .then(&[
                "Open the console's Flows page: each stuck run names the step it waits on, why, and what resumes it.",
                "Or `conveyor flow stuck` in a terminal.",
            ]),
        );
    }
    alerts
}

/// `order` → `Order`.
fn upper_first(name: &str) -> String {
    let mut letters = name.chars();
    letters
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + letters.as_str())
        .unwrap_or_default()
}

/// `observability/alerts.yml`: every alert as a Prometheus rule, each with the address of its
/// runbook on the console (`console` among Prometheus's external labels).
pub fn rules_yaml(names: &Names) -> String {
    let mut out = String::from(
        "# Written by `conveyor deploy` from crates/system/src/alerts.rs: edit that, then run it.\n\
         # Each alert links to its runbook on the operators' console (Prometheus's external\n\
         # label `console`), and the book's Reference has the same runbooks.\n\
         groups:\n  - name: conveyor\n    rules:\n",
    );
    for alert in alerts(names) {
        let _ = write!(
            out,
            "      - alert: {}\n        expr: {}\n        for: {}\n        labels:\n          severity: page\n        annotations:\n          summary: {}\n          runbook_url: {}\n",
            alert.name,
            yaml_string(&alert.expr),
            alert.hold,
            yaml_string(&alert.summary),
            yaml_string(&format!(
                "{{{{ $externalLabels.console }}}}/runbooks#{}",
                alert.anchor
            )),
        );
    }
    out
}

/// A YAML double-quoted string.
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The book's runbooks page: each alert, what it means and what to do.
pub fn runbooks_markdown(names: &Names) -> String {
    let mut out = String::from(
        "# Runbooks\n\n<!-- Written by `conveyor reference` from crates/system/src/alerts.rs. -->\n\n\
         One section per alert of `observability/alerts.yml`. Each alert links here, to the\n\
         console's copy of its section, through Prometheus's external label `console`.\n",
    );
    for alert in alerts(names) {
        let _ = write!(
            out,
            "\n## {} {{#{}}}\n\nFires when `{}` holds for {}.\n\n{}\n\n",
            alert.name, alert.anchor, alert.expr, alert.hold, alert.meaning
        );
        for (index, step) in alert.steps.iter().enumerate() {
            let _ = writeln!(out, "{}. {step}", index + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alert_has_a_runbook_and_each_flow_a_stuck_alert() {
        let alerts = alerts(&Names::default());
        assert!(
            alerts
                .iter()
                .all(|alert| !alert.meaning.is_empty() && !alert.steps.is_empty())
        );
        for flow in all_flows() {
            assert!(
                alerts
                    .iter()
                    .any(|alert| alert.expr.contains(&format!("flow=\"{}\"", flow.name)))
            );
        }
        assert_eq!(anchor_of("ConveyorOutboxParked"), "conveyor-outbox-parked");
        let prefixed = rules_yaml(&Names::with_prefix("blue"));
        assert!(
            prefixed.contains("queue=\\\"blue.conveyor.unrouted\\\""),
            "{prefixed}"
        );
    }
}
