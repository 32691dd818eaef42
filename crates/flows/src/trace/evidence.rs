//! Gathering what the services' records say about a set of runs of a flow: each source read
//! at most once for all of them, and a source that cannot be read becomes a note, never a
//! failure of the whole answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::Flow;
use chrono::{DateTime, Utc};
use conveyor::dead_letter::{DeadLetter, DeadLetterQueue};
use futures_util::future::join_all;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Sources, TraceError};
use crate::map::FlowMap;

/// How long one service's `/readyz` may take to answer.
const READY_TIMEOUT: Duration = Duration::from_millis(500);
/// Unsent outbox rows read per service when several runs are looked at: beyond this the
/// outbox is far behind, which the diagnosis says by itself.
const UNSENT_READ: i64 = 10_000;

/// An event of one of the runs, as its emitter's outbox or sent log holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct EventRecord {
    pub(super) event_id: Uuid,
    pub(super) event_type: String,
    pub(super) correlation_id: Option<Uuid>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) published_at: Option<DateTime<Utc>>,
    pub(super) attempts: i32,
    pub(super) last_error: Option<String>,
    pub(super) parked_at: Option<DateTime<Utc>>,
}

/// An unsent outbox row, with the start of its envelope (where the correlation id is).
#[derive(sqlx::FromRow)]
struct UnsentRow {
    event_id: Uuid,
    event_type: String,
    head: Vec<u8>,
    created_at: DateTime<Utc>,
    attempts: i32,
    last_error: Option<String>,
    parked_at: Option<DateTime<Utc>>,
}

/// What a dead letter says of why its service gave up.
#[derive(Debug, Clone, Default)]
pub(super) struct Letter {
    pub(super) event_id: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) error: Option<String>,
    pub(super) attempts: Option<u32>,
    pub(super) failed_at: Option<DateTime<Utc>>,
}

impl From<DeadLetter> for Letter {
    fn from(letter: DeadLetter) -> Self {
        Self {
            event_id: letter.id,
            kind: letter.error_kind,
            error: letter.error,
            attempts: letter.attempts,
            failed_at: letter.failed_at,
        }
    }
}

/// When a service handled an event, and which delivery it was.
#[derive(Debug, Clone, Copy)]
pub(super) struct Handled {
    pub(super) at: DateTime<Utc>,
    /// None for rows written before the inbox recorded attempts.
    pub(super) attempt: Option<u32>,
}

#[cfg(test)]
impl Handled {
    /// Handled on the first delivery.
    pub(super) fn at(at: DateTime<Utc>) -> Self {
        Self {
            at,
            attempt: Some(1),
        }
    }
}

/// A service's queue as the broker counts it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct QueueState {
    pub(super) ready: u32,
    pub(super) consumers: u32,
    /// Messages waiting in its retry tiers.
    pub(super) retrying: u32,
}

/// What every source said.
#[derive(Debug, Default)]
pub(super) struct Evidence {
    /// By the service whose records hold it (its emitter).
    pub(super) events: Vec<(&'static str, EventRecord)>,
    /// When each service handled each event id.
    pub(super) handled: HashMap<(&'static str, Uuid), Handled>,
    /// Dead letters with one of the runs' correlation ids, by the service that gave up.
    pub(super) letters: Vec<(&'static str, Letter)>,
    pub(super) queues: BTreeMap<&'static str, QueueState>,
    /// `Err` holds why a service is not ready.
    pub(super) readiness: BTreeMap<&'static str, Result<(), String>>,
    /// When the deadline owner's relay last watched its schedule (the deadlines' clock).
    pub(super) clock: Option<DateTime<Utc>>,
    pub(super) now: DateTime<Utc>,
    pub(super) notes: Vec<String>,
}

/// The database of `service`, named by a flow's declaration.
pub(super) fn database_of<'s>(
    sources: &'s Sources,
    service: &'static str,
) -> Result<&'s PgPool, TraceError> {
    sources
        .databases
        .get(service)
        .ok_or(TraceError::NoDatabase { service })
}

/// Every source's records of `flow`'s runs `ids`.
pub(super) async fn gather(
    sources: &Sources,
    map: &FlowMap,
    flow: &Flow,
    ids: &[Uuid],
) -> Evidence {
    let mut evidence = Evidence {
        now: Utc::now(),
        ..Evidence::default()
    };
    let wanted: HashSet<Uuid> = ids.iter().copied().collect();
    let sent = join_all(sources.databases.iter().map(|(service, pool)| {
        let wanted = &wanted;
        async move { (*service, events_of(pool, ids, wanted).await) }
    }));
    for (service, events) in sent.await {
        match events {
            Ok(events) => evidence
                .events
                .extend(events.into_iter().map(|event| (service, event))),
            Err(error) => evidence.notes.push(format!(
                "{service}'s sent events could not be read: {error}"
            )),
        }
    }
    let event_ids: Vec<Uuid> = evidence
        .events
        .iter()
        .map(|(_, event)| event.event_id)
        .collect();
    let inboxes = join_all(map.consumers().map(|(service, _)| {
        let event_ids = &event_ids;
        async move {
            let Some(pool) = sources.databases.get(&service) else {
                return (
                    service,
                    Err(format!("{service}'s database is not configured")),
                );
            };
            let handled = handled_by(pool, service, event_ids)
                .await
                .map_err(|error| format!("{service}'s inbox could not be read: {error}"));
            (service, handled)
        }
    }));
    for (service, handled) in inboxes.await {
        match handled {
            Ok(handled) => evidence.handled.extend(
                handled
                    .into_iter()
                    .map(|(id, handled)| ((service, id), handled)),
            ),
            Err(note) => evidence.notes.push(note),
        }
    }
    if let Ok(owner) = database_of(sources, flow.deadline.owner) {
        evidence.clock =
            sqlx::query_scalar("SELECT ticked_at FROM conveyor.schedule_clock WHERE id = 1")
                .fetch_optional(owner)
                .await
                .ok()
                .flatten();
    }
    match &sources.amqp {
        Some(amqp) => broker(sources, amqp, map, &wanted, &mut evidence).await,
        None => evidence
            .notes
            .push("the broker was left out: no dead letters or queue depths".to_owned()),
    }
    evidence.readiness = readiness(sources).await;
    evidence
}

/// The runs' events in one service's sent log and outbox.
async fn events_of(
    pool: &PgPool,
    ids: &[Uuid],
    wanted: &HashSet<Uuid>,
) -> sqlx::Result<Vec<EventRecord>> {
    let mut events: Vec<EventRecord> = sqlx::query_as(
        "SELECT event_id, event_type, correlation_id, created_at, published_at,
                0 AS attempts, NULL::text AS last_error, NULL::timestamptz AS parked_at
         FROM conveyor.published WHERE correlation_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    // Unsent rows keep their correlation id inside the envelope, near its start.
    let unsent: Vec<UnsentRow> = if let [one] = ids {
        sqlx::query_as(
                "SELECT event_id, event_type, substring(payload FROM 1 FOR 1024) AS head, created_at,
                        attempts, last_error, parked_at
                 FROM conveyor.outbox WHERE published_at IS NULL
                   AND position(convert_to('\"correlationid\":\"' || $1::text || '\"', 'UTF8') IN payload) > 0",
            )
            .bind(one)
            .fetch_all(pool)
            .await?
    } else {
        sqlx::query_as(
            "SELECT event_id, event_type, substring(payload FROM 1 FOR 1024) AS head, created_at,
                        attempts, last_error, parked_at
                 FROM conveyor.outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(UNSENT_READ)
        .fetch_all(pool)
        .await?
    };
    for row in unsent {
        let Some(correlation_id) = correlation_in(&row.head).filter(|id| wanted.contains(id))
        else {
            continue;
        };
        events.push(EventRecord {
            event_id: row.event_id,
            event_type: row.event_type,
            correlation_id: Some(correlation_id),
            created_at: row.created_at,
            published_at: None,
            attempts: row.attempts,
            last_error: row.last_error,
            parked_at: row.parked_at,
        });
    }
    Ok(events)
}

/// The correlation id in the start of a stored envelope.
pub(super) fn correlation_in(head: &[u8]) -> Option<Uuid> {
    const KEY: &[u8] = b"\"correlationid\":\"";
    let start = head.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let text = std::str::from_utf8(head.get(start..start + 36)?).ok()?;
    text.parse().ok()
}

async fn handled_by(
    pool: &PgPool,
    service: &'static str,
    event_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, Handled)>> {
    let rows: Vec<(Uuid, DateTime<Utc>, Option<i32>)> = sqlx::query_as(
        "SELECT message_id, handled_at, attempt FROM conveyor.inbox
         WHERE consumer = $1 AND message_id = ANY($2)",
    )
    .bind(service)
    .bind(event_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, attempt)| {
            let attempt = attempt.and_then(|n| u32::try_from(n).ok());
            (id, Handled { at, attempt })
        })
        .collect())
}

/// Queue depths of every consuming service, and its dead letters of these runs.
async fn broker(
    sources: &Sources,
    amqp: &conveyor::AmqpConfig,
    map: &FlowMap,
    wanted: &HashSet<Uuid>,
    evidence: &mut Evidence,
) {
    let connection = match amqp.connect().await {
        Ok(connection) => connection,
        Err(error) => {
            evidence
                .notes
                .push(format!("the broker could not be reached: {error}"));
            return;
        }
    };
    let names = &sources.names;
    for (service, tiers) in map.consumers() {
        let mut state = QueueState::default();
        if let Some((ready, consumers)) = depth(&connection, &names.service_queue(service)).await {
            state.ready = ready;
            state.consumers = consumers;
        }
        for tier in tiers {
            let queue = names.retry_queue(service, *tier);
            state.retrying += depth(&connection, &queue)
                .await
                .map_or(0, |(ready, _)| ready);
        }
        evidence.queues.insert(service, state);
        let dead_letters = names.dead_letter_queue(service);
        match depth(&connection, &dead_letters).await {
            Some((0, _)) | None => {}
            Some((_, readers)) if readers > 0 => evidence.notes.push(format!(
                "{dead_letters} is being read by another command; its letters were not looked at"
            )),
            Some(_) => {
                letters_of(amqp, names, service, wanted, evidence).await;
            }
        }
    }
    let _ = connection.close(200, "looked".into()).await;
}

async fn letters_of(
    amqp: &conveyor::AmqpConfig,
    names: &conveyor::Names,
    service: &'static str,
    wanted: &HashSet<Uuid>,
    evidence: &mut Evidence,
) {
    let scanned = match DeadLetterQueue::open(amqp, names, service).await {
        Ok(queue) => {
            let mut found = Vec::new();
            let summary = queue
                .scan(|letter| {
                    let ours = letter
                        .correlation_id
                        .as_deref()
                        .and_then(|id| id.parse::<Uuid>().ok())
                        .is_some_and(|id| wanted.contains(&id));
                    if ours {
                        found.push(Letter::from(letter));
                    }
                })
                .await;
            summary.map(|summary| (found, summary.complete()))
        }
        Err(error) => Err(error),
    };
    match scanned {
        Ok((found, complete)) => {
            if !complete {
                evidence.notes.push(format!(
                    "{service}'s dead letters were read only in part (another reader took some)"
                ));
            }
            evidence
                .letters
                .extend(found.into_iter().map(|letter| (service, letter)));
        }
        Err(error) => evidence.notes.push(format!(
            "{service}'s dead letters could not be read: {error}"
        )),
    }
}

/// Ready messages and consumers of `queue`, if it exists.
async fn depth(connection: &lapin::Connection, queue: &str) -> Option<(u32, u32)> {
    let declared = conveyor::queue_depth(connection, queue).await.ok()?;
    Some((declared.message_count(), declared.consumer_count()))
}

/// Each service's `/readyz`, all at once.
async fn readiness(sources: &Sources) -> BTreeMap<&'static str, Result<(), String>> {
    let client = reqwest::Client::builder()
        .timeout(READY_TIMEOUT)
        .build()
        .unwrap_or_default();
    let checks = sources.urls.iter().map(|(service, url)| {
        let client = client.clone();
        async move {
            let answer = client.get(format!("{url}/readyz")).send().await;
            let verdict = match answer {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    Err(format!("/readyz answers {status}: {}", body.trim()))
                }
                Err(error) if error.is_timeout() => {
                    Err(format!("/readyz gave no answer within {READY_TIMEOUT:?}"))
                }
                Err(_) => Err(format!("nothing answers at {url}")),
            };
            (*service, verdict)
        }
    });
    join_all(checks).await.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_correlation_id_is_found_in_a_stored_envelope() {
        let envelope = conveyor::Envelope::new("orders", "order.created", serde_json::json!({}));
        let bytes = envelope.to_bytes();
        assert_eq!(correlation_in(&bytes), Some(envelope.correlationid));
        assert_eq!(correlation_in(b"{\"correlationid\":\"not-a-uuid\"}"), None);
        assert_eq!(correlation_in(b"{}"), None);
    }
}
