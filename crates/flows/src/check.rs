//! A declaration against what the event contract and the services say, so a flow cannot
//! name an event nobody sends, a step nobody handles, or an answer its service may not emit.

use crate::flow::{Flow, Outcome};

/// What the contract and the services' declarations say, as the check asks it.
pub trait Participants {
    /// Whether the contract has `event_type`.
    fn is_known(&self, event_type: &str) -> bool;
    /// The one service whose events of `event_type` consumers take.
    fn owner_of(&self, event_type: &str) -> Option<&str>;
    /// Whether `service`'s consumer registers a handler of `event_type`.
    fn handles(&self, service: &str, event_type: &str) -> bool;
}

/// How `flow` disagrees with `participants`, or with itself, one sentence each.
pub fn check(flow: &Flow, participants: &impl Participants) -> Vec<String> {
    let mut problems = Vec::new();
    let name = flow.name;
    let mut events = vec![
        flow.starts_with,
        flow.deadline.timer,
        flow.deadline.ends_with,
    ];
    events.extend(flow.ends.iter().map(|end| end.event));
    for step in flow.steps {
        events.push(step.on);
        events.extend(step.emits);
    }
    for owed in flow.compensations {
        events.extend([owed.on, owed.undoes]);
        events.extend(owed.emits);
    }
    for event in &events {
        if !participants.is_known(event) {
            problems.push(format!(
                "flow {name} names {event}, which the contract has not"
            ));
        }
    }
    for step in flow.steps {
        problems.extend(handled(name, participants, step.service, step.on));
        problems.extend(owned(name, participants, step.service, step.emits));
        // A step on a success end carries out what the run decided (a refund once a return
        // closed): its answers follow the run rather than lead it on.
        let carries_out = flow.outcome_of(step.on) == Some(Outcome::Success);
        for answer in step.emits {
            let leads_on = carries_out
                || flow.outcome_of(answer).is_some()
                || flow.steps.iter().any(|next| next.on == *answer);
            if !leads_on {
                problems.push(format!(
                    "flow {name}: {} answers {} with {answer}, which no step takes and which ends nothing",
                    step.service, step.on
                ));
            }
        }
    }
    for owed in flow.compensations {
        problems.extend(handled(name, participants, owed.service, owed.on));
        problems.extend(owned(name, participants, owed.service, owed.emits));
        if flow.outcome_of(owed.on) != Some(Outcome::Failure) {
            problems.push(format!(
                "flow {name}: {} compensates on {}, which does not end a run as a failure",
                owed.service, owed.on
            ));
        }
        let took = flow
            .steps
            .iter()
            .any(|step| step.service == owed.service && step.on == owed.undoes);
        if !took {
            problems.push(format!(
                "flow {name}: {} undoes its step on {}, but takes no such step",
                owed.service, owed.undoes
            ));
        }
    }
    let deadline = &flow.deadline;
    problems.extend(owned(
        name,
        participants,
        deadline.owner,
        &[deadline.timer, deadline.ends_with],
    ));
    problems.extend(handled(name, participants, deadline.owner, deadline.timer));
    let keeper = flow.runs.service;
    if keeper != deadline.owner && !flow.participants().contains(&keeper) {
        problems.push(format!(
            "flow {name}: its runs are kept by {keeper}, which takes no part in it"
        ));
    }
    for agreement in flow.agreements {
        if !flow.participants().contains(&agreement.service) {
            problems.push(format!(
                "flow {name}: its {} agreement is with {}, which takes no part in it",
                agreement.name, agreement.service
            ));
        }
    }
    if flow.outcome_of(deadline.ends_with) != Some(Outcome::Failure) {
        problems.push(format!(
            "flow {name}: its deadline ends a run with {}, which is not a failure end",
            deadline.ends_with
        ));
    }
    if !flow.steps.iter().any(|step| step.on == flow.starts_with) {
        problems.push(format!(
            "flow {name} starts with {}, which no step takes",
            flow.starts_with
        ));
    }
    problems
}

fn handled(
    flow: &str,
    participants: &impl Participants,
    service: &str,
    event: &str,
) -> Option<String> {
    (!participants.handles(service, event)).then(|| {
        format!("flow {flow}: {service} is declared to handle {event}, but its consumer has no handler of it")
    })
}

fn owned(
    flow: &str,
    participants: &impl Participants,
    service: &str,
    events: &[&str],
) -> Vec<String> {
    events
        .iter()
        .filter(|event| participants.owner_of(event) != Some(service))
        .map(|event| {
            let owner = participants.owner_of(event).unwrap_or("no service");
            format!("flow {flow}: {service} is declared to emit {event}, which is {owner}'s")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flow::{Agreement, Compensation, Deadline, End, Runs, Step};

    /// A return: the shop books a pickup, the warehouse restocks, the shop refunds.
    const RETURN: Flow = Flow {
        name: "return",
        summary: "A customer sends lines back.",
        starts_with: "return.requested",
        key: "return_id",
        steps: &[
            Step {
                on: "return.requested",
                service: "warehouse",
                emits: &["pickup.booked", "pickup.refused"],
            },
            Step {
                on: "pickup.booked",
                service: "shop",
                emits: &["return.closed"],
            },
            Step {
                on: "pickup.refused",
                service: "shop",
                emits: &["return.failed"],
            },
        ],
        ends: &[
            End {
                event: "return.closed",
                outcome: Outcome::Success,
            },
            End {
                event: "return.failed",
                outcome: Outcome::Failure,
            },
        ],
        compensations: &[Compensation {
            service: "warehouse",
            on: "return.failed",
            undoes: "return.requested",
            emits: &["pickup.cancelled"],
        }],
        deadline: Deadline {
            owner: "shop",
            default: Duration::from_secs(60),
            setting: "RETURN_TIMEOUT",
            timer: "return.deadline-passed",
            ends_with: "return.failed",
        },
        runs: Runs {
            service: "shop",
            query: "SELECT * FROM returns",
        },
        agreements: &[Agreement {
            name: "pickup",
            expects: "SELECT id, NULL::jsonb FROM returns",
            service: "warehouse",
            holds: "SELECT return_id, NULL::jsonb FROM pickups",
        }],
    };

    struct Known {
        owners: &'static [(&'static str, &'static str)],
        handlers: &'static [(&'static str, &'static str)],
    }

    impl Participants for Known {
        fn is_known(&self, event_type: &str) -> bool {
            self.owners.iter().any(|(event, _)| *event == event_type)
        }
        fn owner_of(&self, event_type: &str) -> Option<&str> {
            let owner = self.owners.iter().find(|(event, _)| *event == event_type);
            owner.map(|(_, service)| *service)
        }
        fn handles(&self, service: &str, event_type: &str) -> bool {
            self.handlers.contains(&(service, event_type))
        }
    }

    const SHOP: Known = Known {
        owners: &[
            ("return.requested", "shop"),
            ("pickup.booked", "warehouse"),
            ("pickup.refused", "warehouse"),
            ("pickup.cancelled", "warehouse"),
            ("return.closed", "shop"),
            ("return.failed", "shop"),
            ("return.deadline-passed", "shop"),
        ],
        handlers: &[
            ("warehouse", "return.requested"),
            ("warehouse", "return.failed"),
            ("shop", "pickup.booked"),
            ("shop", "pickup.refused"),
            ("shop", "return.deadline-passed"),
        ],
    };

    #[test]
    fn a_declaration_that_agrees_with_its_services_has_no_problem() {
        assert_eq!(check(&RETURN, &SHOP), Vec::<String>::new());
        assert_eq!(RETURN.participants(), ["warehouse", "shop"]);
    }

    #[test]
    fn a_handler_missing_an_answer_owned_elsewhere_or_a_dead_end_is_named() {
        let drifted = Known {
            owners: &[
                ("return.requested", "shop"),
                ("pickup.booked", "shop"),
                ("pickup.refused", "warehouse"),
                ("pickup.cancelled", "warehouse"),
                ("return.closed", "shop"),
                ("return.failed", "shop"),
                ("return.deadline-passed", "shop"),
            ],
            handlers: &[
                ("warehouse", "return.requested"),
                ("shop", "pickup.booked"),
                ("shop", "pickup.refused"),
            ],
        };
        let problems = check(&RETURN, &drifted);
        let named = |words: &str| problems.iter().any(|problem| problem.contains(words));
        assert!(
            named("warehouse is declared to emit pickup.booked, which is shop's"),
            "{problems:#?}"
        );
        assert!(
            named("warehouse is declared to handle return.failed"),
            "{problems:#?}"
        );
        // The deadline's timer has nobody to end the run when it comes.
        assert!(
            named("shop is declared to handle return.deadline-passed"),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");

        let dead_end = Flow {
            steps: &[Step {
                on: "return.requested",
                service: "warehouse",
                emits: &["pickup.booked"],
            }],
            ..RETURN
        };
        let problems = check(&dead_end, &SHOP);
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("which no step takes and which ends nothing")),
            "{problems:#?}"
        );

        let kept_elsewhere = Flow {
            runs: Runs {
                service: "ledger",
                ..RETURN.runs
            },
            ..RETURN
        };
        assert_eq!(
            check(&kept_elsewhere, &SHOP),
            ["flow return: its runs are kept by ledger, which takes no part in it"]
        );

        const ELSEWHERE: &[Agreement] = &[Agreement {
            name: "pickup",
            expects: "SELECT id, NULL::jsonb FROM returns",
            service: "ledger",
            holds: "SELECT id, NULL::jsonb FROM entries",
        }];
        let agreed_elsewhere = Flow {
            agreements: ELSEWHERE,
            ..RETURN
        };
        assert_eq!(
            check(&agreed_elsewhere, &SHOP),
            ["flow return: its pickup agreement is with ledger, which takes no part in it"]
        );
    }
}
