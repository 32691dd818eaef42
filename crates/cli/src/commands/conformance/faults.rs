//! The cases that break the subject's footing mid-batch: its broker connection closed under
//! it, and the process killed. Each sends a burst of slow events, strikes once some are
//! handled and others are not, and expects every one handled exactly once after.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;
use system::management::percent_encode;
use uuid::Uuid;

use super::observe::Observer;
use super::report::CaseResult;
use super::sandbox::Sandbox;
use super::send::{self, Outgoing, Sender, Senders};
use super::subject_process::{SubjectProcess, consumers};
use super::{EVENT_TYPE, SERVICE};

/// Events in a burst, and how long each holds its transaction: long enough that the strike
/// lands while batches are in flight.
const BURST: usize = 300;
const HOLD_MS: u64 = 20;
const LIMIT: Duration = Duration::from_secs(60);
/// The longest a burst may wait for its first effect: a subject that handles nothing in
/// this long is failed at once rather than waited for.
const FIRST_LIMIT: Duration = Duration::from_secs(20);

/// Closes the subject's broker connections (as a broker restart or a network cut would)
/// once part of a burst is handled.
///
/// # Errors
/// When the broker, its management API or the database cannot be reached.
pub(crate) async fn dropped_connection(
    sandbox: &Sandbox,
    sent: &mut HashSet<Uuid>,
) -> anyhow::Result<CaseResult> {
    let name = "dropped-connection";
    let what = "its broker connection closed mid-batch, every event is still handled exactly once";
    let ids = burst(sandbox, name, sent).await?;
    let mut observer = Observer::open(sandbox).await?;
    let handled_before = match strike_moment(&observer, &ids, name, what).await? {
        Ok(handled) => handled,
        Err(verdict) => return Ok(verdict),
    };
    let closed = close_connections(sandbox).await?;
    if closed == 0 {
        return Ok(CaseResult::failed(
            name,
            what,
            format!(
                "no connection of the subject's user {} was open",
                sandbox.subject.name
            ),
        ));
    }
    let verdict = all_once(
        &mut observer,
        &ids,
        &format!(
            "{closed} connections closed with {handled_before} of {} handled",
            ids.len()
        ),
    )
    .await?;
    let queue = sandbox.names.service_queue(SERVICE);
    let verdict = if verdict.is_ok() && consumers(sandbox, &queue).await? == 0 {
        CaseResult::failed(name, what, format!("it did not consume from {queue} again"))
    } else {
        verdict.into_result(name, what)
    };
    observer.close().await;
    Ok(verdict)
}

/// Kills the subject's process group (SIGKILL) once part of a burst is handled, and starts
/// it again.
///
/// # Errors
/// As [`dropped_connection`], or when the subject cannot be started again.
pub(crate) async fn killed(
    sandbox: &Sandbox,
    subject: &mut SubjectProcess,
    sent: &mut HashSet<Uuid>,
) -> anyhow::Result<CaseResult> {
    let name = "killed";
    let what = "killed mid-batch and started again, every event is handled exactly once";
    let ids = burst(sandbox, name, sent).await?;
    let mut observer = Observer::open(sandbox).await?;
    let handled_before = match strike_moment(&observer, &ids, name, what).await? {
        Ok(handled) => handled,
        Err(verdict) => return Ok(verdict),
    };
    subject.kill_and_restart().await?;
    subject.wait_until_consuming(sandbox).await?;
    let verdict = all_once(
        &mut observer,
        &ids,
        &format!("killed with {handled_before} of {} handled", ids.len()),
    )
    .await?;
    observer.close().await;
    Ok(verdict.into_result(name, what))
}

async fn burst(
    sandbox: &Sandbox,
    case: &str,
    sent: &mut HashSet<Uuid>,
) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(BURST);
    let mut messages = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let id = Uuid::now_v7();
        let data = send::order_confirmed(json!({ "hold_ms": HOLD_MS }))?;
        messages.push(Outgoing {
            sender: Sender::Owner,
            exchange: sandbox.names.events_exchange(),
            routing_key: EVENT_TYPE.to_owned(),
            body: send::envelope(id, EVENT_TYPE, &data),
            properties: send::properties(id, case, EVENT_TYPE),
        });
        ids.push(id);
    }
    sent.extend(ids.iter().copied());
    let senders = Senders::open(sandbox).await?;
    senders.send(&messages).await?;
    senders.close().await;
    Ok(ids)
}

/// Waits until part of the burst is handled and part is not, the moment to strike; answers
/// how many are. A verdict instead when none is handled within [`FIRST_LIMIT`], or all
/// already are.
async fn strike_moment(
    observer: &Observer,
    ids: &[Uuid],
    name: &str,
    what: &str,
) -> anyhow::Result<Result<usize, CaseResult>> {
    let started = Instant::now();
    let handled = loop {
        let effects = observer.effects().await?;
        let handled = ids.iter().filter(|id| effects.contains_key(id)).count();
        if handled > 0 || started.elapsed() > FIRST_LIMIT {
            break handled;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ok(match handled {
        0 => Err(CaseResult::failed(
            name,
            what,
            format!(
                "none of the {BURST} events was handled within {} s",
                FIRST_LIMIT.as_secs()
            ),
        )),
        all if all >= ids.len() => Err(too_fast(name, what)),
        some => Ok(some),
    })
}

fn too_fast(name: &str, what: &str) -> CaseResult {
    CaseResult::failed(
        name,
        what,
        format!(
            "all {BURST} events were handled before the strike could land; each should hold its \
             transaction {HOLD_MS} ms (hold_ms), so a subject that honours it and takes batches \
             of at most a few hundred is still busy"
        ),
    )
}

/// The subject user's connections, closed through the management API.
async fn close_connections(sandbox: &Sandbox) -> anyhow::Result<usize> {
    #[derive(Deserialize)]
    struct Open {
        name: String,
        user: String,
    }
    let api = sandbox.management();
    let path = format!("vhosts/{}/connections", percent_encode(&sandbox.vhost));
    let open: Vec<Open> = api
        .get(&path, "the vhost's connections")
        .await?
        .json()
        .await?;
    let mut closed = 0;
    for connection in open.iter().filter(|open| open.user == sandbox.subject.name) {
        api.delete(
            &format!("connections/{}", percent_encode(&connection.name)),
            "closing a connection of the subject",
        )
        .await?;
        closed += 1;
    }
    Ok(closed)
}

/// The verdict on a burst: each event handled exactly once, no dead letter.
struct Verdict {
    problems: Vec<String>,
    detail: String,
}

impl Verdict {
    fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn into_result(self, name: &str, what: &str) -> CaseResult {
        if self.problems.is_empty() {
            CaseResult::passed(name, what, self.detail)
        } else {
            CaseResult::failed(
                name,
                what,
                format!("{}: {}", self.detail, self.problems.join("; ")),
            )
        }
    }
}

async fn all_once(observer: &mut Observer, ids: &[Uuid], strike: &str) -> anyhow::Result<Verdict> {
    let started = Instant::now();
    while started.elapsed() < LIMIT {
        let effects = observer.effects().await?;
        if ids.iter().all(|id| effects.contains_key(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    observer
        .settle(Duration::from_secs(1), super::cases::SETTLE_LIMIT)
        .await?;
    let effects = observer.effects().await?;
    let missing = ids.iter().filter(|id| !effects.contains_key(id)).count();
    let repeated = ids
        .iter()
        .filter(|id| effects.get(id).is_some_and(|attempts| attempts.len() > 1))
        .count();
    let ours: HashSet<&Uuid> = ids.iter().collect();
    let letters = observer
        .letters
        .iter()
        .filter(|letter| letter.message_id().is_some_and(|id| ours.contains(&id)))
        .count();
    let mut problems = Vec::new();
    if missing > 0 {
        problems.push(format!("{missing} never handled (lost)"));
    }
    if repeated > 0 {
        problems.push(format!("{repeated} handled more than once"));
    }
    if letters > 0 {
        problems.push(format!("{letters} dead-lettered"));
    }
    Ok(Verdict {
        problems,
        detail: format!(
            "{strike}; after it, {} of {} handled once",
            ids.len() - missing - repeated,
            ids.len()
        ),
    })
}
