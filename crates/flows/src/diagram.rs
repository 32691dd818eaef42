//! A declaration as a Mermaid flowchart: events are nodes, each step an arrow labelled with
//! the service that takes it, compensations dotted arrows, the deadline a node of its own
//! that schedules its timer event.

use std::fmt::Write as _;

use crate::flow::{Flow, Outcome};

/// The Mermaid text of `flow`'s diagram.
pub fn mermaid(flow: &Flow) -> String {
    let mut nodes: Vec<&'static str> = Vec::new();
    let mut id = |event: &'static str| -> String {
        let index = nodes
            .iter()
            .position(|known| *known == event)
            .unwrap_or_else(|| {
                nodes.push(event);
                nodes.len() - 1
            });
        format!("e{index}")
    };
    let mut lines = vec!["flowchart TD".to_owned()];
    lines.push(format!(
        "    {}([\"{}\"])",
        id(flow.starts_with),
        flow.starts_with
    ));
    for step in flow.steps {
        for answer in step.emits {
            lines.push(format!(
                "    {} -->|{}| {}[\"{answer}\"]",
                id(step.on),
                step.service,
                id(answer)
            ));
        }
    }
    for owed in flow.compensations {
        for answer in owed.emits {
            lines.push(format!(
                "    {} -.->|\"{} undoes its step on {}\"| {}[\"{answer}\"]",
                id(owed.on),
                owed.service,
                owed.undoes,
                id(answer)
            ));
        }
    }
    let deadline = &flow.deadline;
    lines.push(format!(
        "    deadline{{{{\"deadline {} s ({})\"}}}} -.->|\"{} schedules it\"| {}[\"{}\"]",
        deadline.default.as_secs(),
        deadline.setting,
        deadline.owner,
        id(deadline.timer),
        deadline.timer
    ));
    lines.push(format!(
        "    {} -->|{}| {}",
        id(deadline.timer),
        deadline.owner,
        id(deadline.ends_with)
    ));
    for end in flow.ends {
        let class = match end.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        };
        lines.push(format!("    class {} {class}", id(end.event)));
    }
    lines.push("    classDef success stroke-width:3px".to_owned());
    lines.push("    classDef failure stroke-dasharray:4".to_owned());
    let mut text = String::new();
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::flow::{Deadline, End, Runs, Step};

    #[test]
    fn every_event_is_one_node_and_every_answer_an_arrow_from_its_step() {
        const FLOW: Flow = Flow {
            name: "return",
            summary: "",
            starts_with: "return.requested",
            key: "return_id",
            steps: &[Step {
                on: "return.requested",
                service: "warehouse",
                emits: &["return.closed", "return.failed"],
            }],
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
            compensations: &[],
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
            agreements: &[],
        };
        let text = mermaid(&FLOW);
        let expected = "flowchart TD\n    e0([\"return.requested\"])\n    e0 -->|warehouse| e1[\"return.closed\"]\n    e0 -->|warehouse| e2[\"return.failed\"]\n    deadline{{\"deadline 60 s (RETURN_TIMEOUT)\"}} -.->|\"shop schedules it\"| e3[\"return.deadline-passed\"]\n    e3 -->|shop| e2\n    class e1 success\n    class e2 failure\n    classDef success stroke-width:3px\n    classDef failure stroke-dasharray:4\n";
        assert_eq!(text, expected);
    }
}
