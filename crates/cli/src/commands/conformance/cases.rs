//! The single-event cases: each sends one event (or one body) and expects either one effect
//! on a given attempt or one dead letter of a given kind; all run at once, each on its own
//! event id and order, so none waits on another's key.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, ShortString};
use serde_json::{Value, json};
use uuid::Uuid;

use super::letters::{self, ExpectedLetter};
use super::observe::{Letter, Observer};
use super::report::CaseResult;
use super::sandbox::Sandbox;
use super::send::{self, Outgoing, Sender, Senders};
use super::{EVENT_TYPE, RETRY_TIERS, SERVICE};

/// The longest the cases may take to reach their outcomes.
const OUTCOME_LIMIT: Duration = Duration::from_secs(60);
/// Queues quiet this long before the verdict: a late duplicate or retry shows meanwhile.
const QUIET: Duration = Duration::from_secs(2);
/// The longest the queues may take to fall quiet before the verdict is taken anyway.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// The consumer's body limit; a body one byte over it must be refused unread.
const MAX_BODY_BYTES: usize = 256 * 1024;

enum Expect {
    /// One effect, committed on this attempt; no dead letter.
    Effect { attempt: i32 },
    /// One dead letter of this kind and attempts; no effect.
    Letter { kind: &'static str, attempts: i64 },
}

enum Sending {
    Once,
    /// Twice, back to back.
    Twice,
    /// Again once its effect is seen: a redelivery after the handling committed.
    AgainAfterEffect,
}

struct Case {
    name: &'static str,
    what: &'static str,
    id: Uuid,
    message: Outgoing,
    sending: Sending,
    expect: Expect,
}

impl Case {
    /// An event of [`EVENT_TYPE`] from its owner to `conveyor.events`, with the subject's
    /// `instructions`.
    fn event(
        sandbox: &Sandbox,
        name: &'static str,
        what: &'static str,
        instructions: Value,
    ) -> anyhow::Result<Self> {
        let id = Uuid::now_v7();
        let data = send::order_confirmed(instructions)?;
        Ok(Self::raw(
            sandbox,
            name,
            what,
            id,
            send::envelope(id, EVENT_TYPE, &data),
        ))
    }

    /// Any body, with the case's properties, from the owner to `conveyor.events`.
    fn raw(
        sandbox: &Sandbox,
        name: &'static str,
        what: &'static str,
        id: Uuid,
        body: Vec<u8>,
    ) -> Self {
        Self {
            name,
            what,
            id,
            message: Outgoing {
                sender: Sender::Owner,
                exchange: sandbox.names.events_exchange(),
                routing_key: EVENT_TYPE.to_owned(),
                body,
                properties: send::properties(id, name, EVENT_TYPE),
            },
            sending: Sending::Once,
            expect: Expect::Effect { attempt: 1 },
        }
    }

    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    fn sending(mut self, sending: Sending) -> Self {
        self.sending = sending;
        self
    }

    fn from(mut self, sender: Sender) -> Self {
        self.message.sender = sender;
        self
    }

    /// Where a dead letter must say the event first came from.
    fn original(&self) -> (String, String) {
        (
            self.message.exchange.clone(),
            self.message.routing_key.clone(),
        )
    }
}

fn letter(kind: &'static str, attempts: i64) -> Expect {
    Expect::Letter { kind, attempts }
}

fn all_cases(sandbox: &Sandbox) -> anyhow::Result<Vec<Case>> {
    let tiers = i64::try_from(RETRY_TIERS.len()).unwrap_or(i64::MAX);
    let mut cases = vec![
        Case::event(
            sandbox,
            "handled-once",
            "an event is handled once",
            json!({}),
        )?,
        Case::event(
            sandbox,
            "duplicate-together",
            "an event sent twice at once is handled once",
            json!({}),
        )?
        .sending(Sending::Twice),
        Case::event(
            sandbox,
            "duplicate-after-commit",
            "an event sent again after its handling committed is not handled again",
            json!({}),
        )?
        .sending(Sending::AgainAfterEffect),
        Case::event(
            sandbox,
            "transient-then-success",
            "a handler failing twice succeeds on the third attempt, through the tiers",
            json!({"transient_failures": 2}),
        )?
        .expect(Expect::Effect { attempt: 3 }),
        Case::event(
            sandbox,
            "retries-exhausted",
            "a handler that keeps failing is dead-lettered once the tiers are used up",
            json!({"transient_failures": 1000}),
        )?
        .expect(letter("retries-exhausted", tiers + 1)),
        Case::event(
            sandbox,
            "permanent",
            "a permanent failure is dead-lettered at once",
            json!({"permanent": true}),
        )?
        .expect(letter("permanent", 1)),
        Case::raw(
            sandbox,
            "malformed",
            "a body that is no envelope is dead-lettered as it came",
            Uuid::now_v7(),
            b"{\"specversion\": \"1.0\", \"truncated".to_vec(),
        )
        .expect(letter("malformed", 0)),
        Case::event(
            sandbox,
            "oversized",
            "a body over 256 KiB is dead-lettered unread",
            json!({"padding": "x".repeat(MAX_BODY_BYTES)}),
        )?
        .expect(letter("malformed", 0)),
        Case::event(
            sandbox,
            "schema",
            "data that breaks the contract is dead-lettered",
            json!({}),
        )?
        .expect(letter("schema", 0)),
        Case::event(
            sandbox,
            "forged-source",
            "an event from a user that may not publish its type is refused",
            json!({}),
        )?
        .from(Sender::Forger)
        .expect(letter("forbidden-source", 0)),
        Case::event(
            sandbox,
            "no-publisher",
            "an event without a user_id is refused",
            json!({}),
        )?
        .from(Sender::Anonymous)
        .expect(letter("forbidden-source", 0)),
        Case::event(
            sandbox,
            "forged-attempts",
            "x-conveyor-attempts from a producer is not believed",
            json!({"transient_failures": 1}),
        )?
        .expect(Expect::Effect { attempt: 2 }),
    ];
    for case in &mut cases {
        match case.name {
            "schema" => break_contract(case)?,
            "forged-attempts" => forge_attempts(case),
            _ => {}
        }
    }
    cases.push(unknown_type(sandbox));
    Ok(cases)
}

/// A negative total: the schema's `minimum` refuses it.
fn break_contract(case: &mut Case) -> anyhow::Result<()> {
    let mut data = send::order_confirmed(json!({}))?;
    data["total_cents"] = json!(-1);
    case.message.body = send::envelope(case.id, EVENT_TYPE, &data);
    Ok(())
}

/// Claims three failed attempts, which only a copy back from a retry queue may.
fn forge_attempts(case: &mut Case) {
    let mut headers = case
        .message
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    headers.insert(
        ShortString::from(conveyor::headers::ATTEMPTS),
        AMQPValue::LongLongInt(3),
    );
    case.message.properties = case.message.properties.clone().with_headers(headers);
}

/// A type the subject has no handler for, put straight into its queue (it binds only its own
/// types).
fn unknown_type(sandbox: &Sandbox) -> Case {
    let id = Uuid::now_v7();
    let event_type = "conformance.unhandled";
    let mut case = Case::raw(
        sandbox,
        "unknown-type",
        "an event of a type without a handler is dead-lettered",
        id,
        send::envelope(id, event_type, &json!({})),
    );
    case.message.exchange = String::new();
    case.message.routing_key = sandbox.names.service_queue(SERVICE);
    case.message.properties = send::properties(id, case.name, event_type);
    case.message.sender = Sender::Anonymous;
    case.expect(letter("unknown-type", 0))
}

/// Sends every case, waits for their outcomes, lets the queues settle, and judges each.
///
/// # Errors
/// When the broker or the database cannot be reached.
pub(crate) async fn run_all(
    sandbox: &Sandbox,
    sent: &mut HashSet<Uuid>,
) -> anyhow::Result<Vec<CaseResult>> {
    let cases = all_cases(sandbox)?;
    sent.extend(cases.iter().map(|case| case.id));
    let senders = Senders::open(sandbox).await?;
    let mut observer = Observer::open(sandbox).await?;
    for case in &cases {
        senders.send(std::slice::from_ref(&case.message)).await?;
        if matches!(case.sending, Sending::Twice) {
            senders.send(std::slice::from_ref(&case.message)).await?;
        }
    }
    wait_for_outcomes(&cases, &senders, &mut observer).await?;
    observer.settle(QUIET, SETTLE_LIMIT).await?;
    let effects = observer.effects().await?;
    let mut results: Vec<CaseResult> = cases
        .iter()
        .map(|case| judge(case, &effects, &observer.letters))
        .collect();
    let ours: HashSet<Uuid> = cases.iter().map(|case| case.id).collect();
    let strays = observer
        .letters
        .iter()
        .filter(|letter| !letter.message_id().is_some_and(|id| ours.contains(&id)))
        .count();
    if strays > 0 {
        results.push(CaseResult::failed(
            "stray-letters",
            "every dead letter belongs to an event sent",
            format!("{strays} dead letters carry no message_id of a case"),
        ));
    }
    senders.close().await;
    observer.close().await;
    Ok(results)
}

async fn wait_for_outcomes(
    cases: &[Case],
    senders: &Senders,
    observer: &mut Observer,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut sent_again = HashSet::new();
    while started.elapsed() < OUTCOME_LIMIT {
        observer.take_letters().await?;
        let effects = observer.effects().await?;
        for case in cases {
            if matches!(case.sending, Sending::AgainAfterEffect)
                && effects.contains_key(&case.id)
                && sent_again.insert(case.id)
            {
                senders.send(std::slice::from_ref(&case.message)).await?;
            }
        }
        let reached = |case: &Case| match case.expect {
            Expect::Effect { .. } => effects.contains_key(&case.id),
            Expect::Letter { .. } => observer
                .letters
                .iter()
                .any(|letter| letter.message_id() == Some(case.id)),
        };
        if cases.iter().all(reached) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn judge(case: &Case, effects: &HashMap<Uuid, Vec<i32>>, letters: &[Letter]) -> CaseResult {
    let attempts = effects.get(&case.id).cloned().unwrap_or_default();
    let own: Vec<&Letter> = letters
        .iter()
        .filter(|letter| letter.message_id() == Some(case.id))
        .collect();
    let mut problems = Vec::new();
    let detail = match case.expect {
        Expect::Effect { attempt } => {
            if attempts != [attempt] {
                problems.push(describe_effects(
                    &attempts,
                    &format!("one effect on attempt {attempt}"),
                ));
            }
            if let Some(letter) = own.first() {
                problems.push(format!("it was dead-lettered ({})", kind_of(letter)));
            }
            format!("one effect, on attempt {attempt}")
        }
        Expect::Letter {
            kind,
            attempts: expected_attempts,
        } => {
            if !attempts.is_empty() {
                problems.push(describe_effects(&attempts, "no effect"));
            }
            match own.as_slice() {
                [] => problems.push(format!(
                    "no dead letter within {} s",
                    OUTCOME_LIMIT.as_secs()
                )),
                [letter] => problems.extend(letters::problems(
                    letter,
                    &ExpectedLetter {
                        case: case.name,
                        kind,
                        attempts: expected_attempts,
                        body: &case.message.body,
                        message_id: case.id.to_string(),
                        original: case.original(),
                    },
                )),
                more => problems.push(format!("{} dead letters, not one", more.len())),
            }
            format!(
                "one dead letter, {kind}, {} {expected_attempts}, body intact",
                conveyor::headers::ATTEMPTS
            )
        }
    };
    if problems.is_empty() {
        CaseResult::passed(case.name, case.what, detail)
    } else {
        CaseResult::failed(case.name, case.what, problems.join("; "))
    }
}

fn describe_effects(attempts: &[i32], wanted: &str) -> String {
    match attempts {
        [] => format!("no effect (wanted {wanted})"),
        [attempt] => format!("one effect on attempt {attempt} (wanted {wanted})"),
        more => format!(
            "{} effects, on attempts {more:?} (wanted {wanted})",
            more.len()
        ),
    }
}

fn kind_of(letter: &Letter) -> String {
    letter
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| conveyor::headers::get_str(headers, conveyor::headers::ERROR_KIND))
        .unwrap_or("no kind")
        .to_owned()
}

/// After every case: nothing left in the subject's queues or DLQ, and no effect of an event
/// the suite did not send.
///
/// # Errors
/// When the broker or the database cannot be reached.
pub(crate) async fn nothing_left_behind(
    sandbox: &Sandbox,
    sent: &HashSet<Uuid>,
) -> anyhow::Result<CaseResult> {
    let mut observer = Observer::open(sandbox).await?;
    observer.settle(QUIET, SETTLE_LIMIT).await?;
    let mut problems = Vec::new();
    let ready = observer.ready_in_queues().await?;
    if ready > 0 {
        problems.push(format!("{ready} messages still wait in its queues"));
    }
    if !observer.letters.is_empty() {
        problems.push(format!(
            "{} dead letters came after the cases were judged",
            observer.letters.len()
        ));
    }
    let unknown = observer
        .effects()
        .await?
        .keys()
        .filter(|id| !sent.contains(id))
        .count();
    if unknown > 0 {
        problems.push(format!("{unknown} effects of events the suite never sent"));
    }
    observer.close().await;
    let name = "nothing-left-behind";
    let what = "its queues and DLQ end empty, with no effect but the events sent";
    Ok(if problems.is_empty() {
        CaseResult::passed(
            name,
            what,
            "queues empty, no late letter, no foreign effect".to_owned(),
        )
    } else {
        CaseResult::failed(name, what, problems.join("; "))
    })
}
