//! The timeline of one run of a flow and, for a run still going, the step it waits on and
//! the likely reason, from the evidence alone (no I/O: every rule is tested on its own).

use crate::Flow;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::evidence::{EventRecord, Evidence};
use super::{Finding, Handling, Outcome, RunRow, Trace, TracedEvent, WaitAction, Waiting};
use crate::map::FlowMap;

/// How long an event may sit unsent before its relay is suspected.
const RELAY_GRACE_SECONDS: i64 = 5;
/// How long the deadline owner's relay may leave its schedule unwatched before it is
/// suspected.
const SCHEDULER_GRACE_SECONDS: i64 = 10;

pub(super) fn diagnose(
    flow: &'static Flow,
    run: &RunRow,
    evidence: &Evidence,
    map: &FlowMap,
) -> Trace {
    let mut events: Vec<TracedEvent> = evidence
        .events
        .iter()
        .filter(|(_, event)| event.correlation_id == Some(run.id))
        .map(|(emitter, event)| traced(emitter, event, evidence, map))
        .collect();
    events.sort_by_key(|event| (event.created_at, event.id));
    let mut trace = Trace {
        flow: flow.name,
        run: run.clone(),
        waiting: None,
        diagnosis: Vec::new(),
        notes: evidence.notes.clone(),
        events,
    };
    if run.running {
        diagnose_running(flow, &mut trace, evidence);
    } else {
        unfinished_compensation(flow, &mut trace);
    }
    trace
}

fn traced(
    emitter: &'static str,
    event: &EventRecord,
    evidence: &Evidence,
    map: &FlowMap,
) -> TracedEvent {
    let handlers = map
        .route(&event.event_type)
        .handlers
        .into_iter()
        .map(|service| Handling {
            service,
            outcome: outcome(service, event.event_id, evidence),
        })
        .collect();
    TracedEvent {
        id: event.event_id,
        event_type: event.event_type.clone(),
        emitted_by: emitter,
        created_at: event.created_at,
        published_at: event.published_at,
        refusals: event.attempts,
        last_error: event.last_error.clone(),
        parked_at: event.parked_at,
        handlers,
    }
}

fn outcome(service: &'static str, event_id: Uuid, evidence: &Evidence) -> Outcome {
    if let Some(handled) = evidence.handled.get(&(service, event_id)) {
        return Outcome::Handled {
            at: handled.at,
            attempt: handled.attempt,
        };
    }
    let id = event_id.to_string();
    let letter = evidence
        .letters
        .iter()
        .find(|(by, letter)| *by == service && letter.event_id.as_deref() == Some(id.as_str()));
    match letter {
        Some((_, letter)) => Outcome::DeadLettered {
            kind: letter.kind.clone(),
            error: letter.error.clone(),
            attempts: letter.attempts,
            at: letter.failed_at,
        },
        None => Outcome::Pending,
    }
}

/// The earliest step not done: an event still in its emitter's outbox, or one a handler has
/// not handled.
fn waiting_step(events: &[TracedEvent]) -> Option<Waiting> {
    events.iter().find_map(|event| {
        let Some(published_at) = event.published_at else {
            return Some(Waiting {
                service: event.emitted_by,
                event_type: event.event_type.clone(),
                event_id: event.id,
                action: WaitAction::Publish,
                since: event.created_at,
            });
        };
        event
            .handlers
            .iter()
            .find(|handling| !matches!(handling.outcome, Outcome::Handled { .. }))
            .map(|handling| Waiting {
                service: handling.service,
                event_type: event.event_type.clone(),
                event_id: event.id,
                action: WaitAction::Handle,
                since: published_at,
            })
    })
}

fn diagnose_running(flow: &Flow, trace: &mut Trace, evidence: &Evidence) {
    let mut findings = Vec::new();
    if trace.events.is_empty() {
        findings.push(Finding {
            rule: "no-events",
            service: Some(flow.runs.service),
            message: format!(
                "no event of this {} is in any service's outbox or sent log (the sent log \
                 keeps a day): {} may not have written {}",
                flow.name, flow.runs.service, flow.starts_with
            ),
        });
    }
    trace.waiting = waiting_step(&trace.events);
    match &trace.waiting {
        Some(waiting) if waiting.action == WaitAction::Publish => {
            findings.extend(relay_findings(&trace.events, waiting, evidence));
        }
        Some(waiting) => findings.extend(handler_findings(&trace.events, waiting, evidence)),
        None if !trace.events.is_empty() => findings.push(Finding {
            rule: "no-reply",
            service: trace
                .events
                .last()
                .and_then(|event| event.handlers.first())
                .map(|h| h.service),
            message: "every event so far was handled, and no reply followed: the last handler \
                      chose to send none (look at its logs and records)"
                .to_owned(),
        }),
        None => {}
    }
    if let Some(deadline_at) = trace.run.deadline_at
        && deadline_at < evidence.now
    {
        findings.push(deadline_finding(flow, deadline_at, evidence));
    }
    trace.diagnosis = findings;
}

fn relay_findings(events: &[TracedEvent], waiting: &Waiting, evidence: &Evidence) -> Vec<Finding> {
    let Some(event) = events.iter().find(|event| event.id == waiting.event_id) else {
        return Vec::new();
    };
    let service = Some(waiting.service);
    let last_error = event.last_error.as_deref().unwrap_or("no error recorded");
    let mut findings = Vec::new();
    if event.parked_at.is_some() {
        findings.push(Finding {
            rule: "relay",
            service,
            message: format!(
                "{} parked {} in its outbox after {} refusals by the broker ({last_error}); \
                 fix the cause, then send it again with `conveyor outbox unpark --service {} --event {}`",
                waiting.service, event.event_type, event.refusals, waiting.service, event.id
            ),
        });
    } else if event.refusals > 0 {
        findings.push(Finding {
            rule: "relay",
            service,
            message: format!(
                "the broker refused {} {} times ({last_error}); the relay keeps trying",
                event.event_type, event.refusals
            ),
        });
    } else if (evidence.now - event.created_at).num_seconds() > RELAY_GRACE_SECONDS {
        findings.push(Finding {
            rule: "relay",
            service,
            message: format!(
                "{} has not published {} yet: is its relay running and the broker reachable?",
                waiting.service, event.event_type
            ),
        });
    }
    findings.extend(not_ready(waiting.service, evidence));
    findings
}

fn handler_findings(
    events: &[TracedEvent],
    waiting: &Waiting,
    evidence: &Evidence,
) -> Vec<Finding> {
    let service = waiting.service;
    let mut findings = Vec::new();
    let handling = events
        .iter()
        .find(|event| event.id == waiting.event_id)
        .and_then(|event| event.handlers.iter().find(|h| h.service == service));
    if let Some(Handling {
        outcome:
            Outcome::DeadLettered {
                kind,
                error,
                attempts,
                at,
            },
        ..
    }) = handling
    {
        let when = at.map_or_else(String::new, |at| format!(" at {}", at.format("%H:%M:%S")));
        let kind = kind
            .as_deref()
            .unwrap_or("by the broker (delivery limit: its consumer crashed on it)");
        let attempts = attempts.map_or_else(String::new, |n| format!(" after {n} attempts"));
        findings.push(Finding {
            rule: "dead-letter",
            service: Some(service),
            message: format!(
                "{service} dead-lettered {}{when} as {kind}{attempts}: {}; once the cause is \
                 fixed: conveyor dlq replay {service} --id {}",
                waiting.event_type,
                error.as_deref().unwrap_or("no error recorded"),
                waiting.event_id
            ),
        });
    }
    findings.extend(not_ready(service, evidence));
    if let Some(queue) = evidence.queues.get(&service) {
        if queue.consumers == 0 {
            findings.push(Finding {
                rule: "no-consumer",
                service: Some(service),
                message: format!("nothing consumes the queue of {service}: is {service} running?"),
            });
        }
        if queue.retrying > 0 {
            findings.push(Finding {
                rule: "retry-pending",
                service: Some(service),
                message: format!(
                    "the retry queues of {service} hold {} messages: this event is likely waiting \
                     for its next attempt (the tiers wait up to a minute)",
                    queue.retrying
                ),
            });
        }
        if queue.ready > 0 {
            findings.push(Finding {
                rule: "backlog",
                service: Some(service),
                message: format!(
                    "{} messages wait in the queue of {service} ahead of it",
                    queue.ready
                ),
            });
        }
    }
    if findings.is_empty() {
        findings.push(Finding {
            rule: "unknown",
            service: Some(service),
            message: format!(
                "{service} is ready, its queue is empty and no dead letter or retry holds {}: \
                 look at {service}'s logs for event {}",
                waiting.event_type, waiting.event_id
            ),
        });
    }
    findings
}

fn not_ready(service: &'static str, evidence: &Evidence) -> Option<Finding> {
    match evidence.readiness.get(&service) {
        Some(Err(why)) => Some(Finding {
            rule: "not-ready",
            service: Some(service),
            message: format!("{service} is not ready: {why}"),
        }),
        _ => None,
    }
}

fn deadline_finding(flow: &Flow, deadline_at: DateTime<Utc>, evidence: &Evidence) -> Finding {
    let owner = flow.deadline.owner;
    let scheduler = match evidence.clock {
        Some(ticked) if (evidence.now - ticked).num_seconds() > SCHEDULER_GRACE_SECONDS => format!(
            "{owner}'s relay last watched its schedule at {} (is {owner} down, or cut off from the broker?); the deadline moves on by the time nobody watched",
            ticked.format("%H:%M:%S")
        ),
        Some(_) => format!(
            "{owner}'s relay watches its schedule and will send {}, which ends it with {}",
            flow.deadline.timer, flow.deadline.ends_with
        ),
        None => format!("{owner}'s schedule clock could not be read"),
    };
    Finding {
        rule: "deadline",
        service: Some(owner),
        message: format!(
            "its deadline passed at {} but it has not ended yet: {scheduler}",
            deadline_at.format("%H:%M:%S")
        ),
    }
}

/// A finished run's compensation still owed: a failure some participant has not handled.
/// Only what the flow's declaration says a service owes counts: a service that only listens
/// to the failure owes nothing.
fn unfinished_compensation(flow: &Flow, trace: &mut Trace) {
    let owes = |service: &'static str, event_type: &str| {
        flow.compensations
            .iter()
            .any(|owed| owed.on == event_type && owed.service == service)
    };
    for event in &trace.events {
        let owing = event
            .handlers
            .iter()
            .filter(|handling| owes(handling.service, &event.event_type));
        for handling in owing {
            let message = match &handling.outcome {
                Outcome::Handled { .. } => continue,
                Outcome::DeadLettered { error, .. } => format!(
                    "{} dead-lettered {} ({}): its compensation is not done; \
                     conveyor dlq replay {} --id {}",
                    handling.service,
                    event.event_type,
                    error.as_deref().unwrap_or("no error recorded"),
                    handling.service,
                    event.id
                ),
                Outcome::Pending => format!(
                    "{} has not handled {} yet: its compensation is not done",
                    handling.service, event.event_type
                ),
            };
            trace.diagnosis.push(Finding {
                rule: "compensation",
                service: Some(handling.service),
                message,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::evidence::{Handled, Letter, QueueState};
    use super::*;

    const FLOW: &Flow = &super::super::fixture::ORDER_FLOW;

    fn order(status: &str, now: DateTime<Utc>) -> RunRow {
        RunRow {
            id: Uuid::new_v4(),
            status: status.to_owned(),
            running: status == "pending",
            reason: None,
            detail: None,
            created_at: now - chrono::Duration::seconds(90),
            deadline_at: Some(now + chrono::Duration::seconds(30)),
            finished_at: None,
        }
    }

    fn event(
        order: &RunRow,
        event_type: &str,
        seconds_ago: i64,
        now: DateTime<Utc>,
    ) -> EventRecord {
        EventRecord {
            event_id: Uuid::new_v4(),
            event_type: event_type.to_owned(),
            correlation_id: Some(order.id),
            created_at: now - chrono::Duration::seconds(seconds_ago),
            published_at: Some(now - chrono::Duration::seconds(seconds_ago)),
            attempts: 0,
            last_error: None,
            parked_at: None,
        }
    }

    fn evidence(now: DateTime<Utc>) -> Evidence {
        Evidence {
            now,
            clock: Some(now),
            queues: ["inventory", "orders", "payments", "shipping"]
                .into_iter()
                .map(|service| {
                    (
                        service,
                        QueueState {
                            ready: 0,
                            consumers: 1,
                            retrying: 0,
                        },
                    )
                })
                .collect(),
            readiness: BTreeMap::new(),
            ..Evidence::default()
        }
    }

    fn map() -> FlowMap {
        super::super::fixture::order_map()
    }

    /// An order whose order.created inventory handled and whose inventory.reserved payments
    /// has not.
    fn waiting_on_payments() -> (RunRow, Evidence, Uuid) {
        let now = Utc::now();
        let order = order("pending", now);
        let mut evidence = evidence(now);
        let created = event(&order, "order.created", 80, now);
        let reserved = event(&order, "inventory.reserved", 79, now);
        evidence
            .handled
            .insert(("inventory", created.event_id), Handled::at(now));
        let reserved_id = reserved.event_id;
        evidence.events.push(("orders", created));
        evidence.events.push(("inventory", reserved));
        (order, evidence, reserved_id)
    }

    #[test]
    fn an_order_waits_on_the_first_step_not_done_and_a_dead_letter_explains_it() {
        let (order, mut evidence, reserved) = waiting_on_payments();
        let trace = diagnose(FLOW, &order, &evidence, &map());
        let waiting = trace.waiting.clone().unwrap();
        assert_eq!(
            (waiting.service, waiting.action),
            ("payments", WaitAction::Handle)
        );
        assert_eq!(trace.diagnosis[0].rule, "unknown");

        evidence.queues.get_mut(&"payments").unwrap().retrying = 1;
        let trace = diagnose(FLOW, &order, &evidence, &map());
        assert_eq!(trace.diagnosis[0].rule, "retry-pending");

        evidence
            .readiness
            .insert("payments", Err("nothing answers".into()));
        evidence.queues.get_mut(&"payments").unwrap().consumers = 0;
        let rules: Vec<_> = diagnose(FLOW, &order, &evidence, &map())
            .diagnosis
            .iter()
            .map(|finding| finding.rule)
            .collect();
        assert_eq!(rules, ["not-ready", "no-consumer", "retry-pending"]);

        evidence.letters.push((
            "payments",
            Letter {
                event_id: Some(reserved.to_string()),
                kind: Some("retries-exhausted".into()),
                error: Some("user is not in payments' copy yet".into()),
                attempts: Some(3),
                failed_at: Some(evidence.now),
            },
        ));
        let trace = diagnose(FLOW, &order, &evidence, &map());
        assert_eq!(trace.diagnosis[0].rule, "dead-letter");
        assert!(
            trace.diagnosis[0]
                .message
                .contains(&format!("conveyor dlq replay payments --id {reserved}")),
            "{}",
            trace.diagnosis[0].message
        );
    }

    #[test]
    fn an_unsent_event_points_at_its_emitters_relay() {
        let (order, mut evidence, _) = waiting_on_payments();
        let created_id = evidence.events[0].1.event_id;
        evidence.events.truncate(1);
        evidence.handled.clear();
        let created = &mut evidence.events[0].1;
        created.published_at = None;
        created.attempts = 5;
        created.parked_at = Some(evidence.now);
        created.last_error = Some("message too large".into());
        let trace = diagnose(FLOW, &order, &evidence, &map());
        let waiting = trace.waiting.unwrap();
        assert_eq!(
            (waiting.service, waiting.action, waiting.event_id),
            ("orders", WaitAction::Publish, created_id)
        );
        assert!(
            trace.diagnosis[0].message.contains("parked"),
            "{:?}",
            trace.diagnosis
        );
    }

    #[test]
    fn a_passed_deadline_and_an_unwatched_schedule_are_named() {
        let (mut order, mut evidence, _) = waiting_on_payments();
        order.deadline_at = Some(evidence.now - chrono::Duration::seconds(5));
        evidence.clock = Some(evidence.now - chrono::Duration::seconds(60));
        let trace = diagnose(FLOW, &order, &evidence, &map());
        let deadline = trace
            .diagnosis
            .iter()
            .find(|f| f.rule == "deadline")
            .unwrap();
        assert!(
            deadline.message.contains("relay last watched its schedule"),
            "{}",
            deadline.message
        );
    }

    #[test]
    fn a_finished_order_owes_nothing_once_every_participant_handled_its_cancellation() {
        let now = Utc::now();
        let order = order("cancelled", now);
        let mut evidence = evidence(now);
        let cancelled = event(&order, "order.cancelled", 10, now);
        for service in ["inventory", "payments"] {
            evidence
                .handled
                .insert((service, cancelled.event_id), Handled::at(now));
        }
        evidence.events.push(("orders", cancelled));
        let trace = diagnose(FLOW, &order, &evidence, &map());
        assert!(trace.waiting.is_none());
        let owed: Vec<_> = trace
            .diagnosis
            .iter()
            .map(|finding| finding.service)
            .collect();
        assert_eq!(owed, [Some("shipping")]);
    }

    #[test]
    fn a_service_that_only_listens_to_the_cancellation_owes_nothing() {
        let now = Utc::now();
        let order = order("cancelled", now);
        let mut evidence = evidence(now);
        let cancelled = event(&order, "order.cancelled", 10, now);
        for service in ["inventory", "payments", "shipping"] {
            evidence
                .handled
                .insert((service, cancelled.event_id), Handled::at(now));
        }
        evidence.events.push(("orders", cancelled));
        // Users listens to cancellations here and has not handled this one.
        let map = map().consumes("users", ["order.cancelled".to_owned()], Vec::new());
        let trace = diagnose(FLOW, &order, &evidence, &map);
        let handlers: Vec<&'static str> = trace.events[0]
            .handlers
            .iter()
            .map(|handling| handling.service)
            .collect();
        assert!(handlers.contains(&"users"), "{handlers:?}");
        assert!(trace.diagnosis.is_empty(), "{:#?}", trace.diagnosis);
    }

    #[test]
    fn a_handled_event_says_on_which_attempt() {
        let (order, mut evidence, reserved) = waiting_on_payments();
        evidence.handled.insert(
            ("payments", reserved),
            Handled {
                at: evidence.now,
                attempt: Some(3),
            },
        );
        let trace = diagnose(FLOW, &order, &evidence, &map());
        let handling = &trace.events[1].handlers[0];
        assert_eq!(handling.service, "payments");
        assert!(
            matches!(
                handling.outcome,
                Outcome::Handled {
                    attempt: Some(3),
                    ..
                }
            ),
            "{:?}",
            handling.outcome
        );
    }
}
