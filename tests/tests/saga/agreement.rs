//! The contract and the services agree: for every event type and version, events generated
//! from the schema's example by changing one integer or string field at a time (the edges —
//! integral floats, negative zero, the i64 bounds and past them, the money ceilings, the
//! schema's own bounds, empty, long and NUL-carrying strings — and seeded random values) are
//! either refused by the contract's validation, as HTTP ingest and every publisher run it, or
//! handled by every consumer's real handler against its real database, where the only
//! refusal allowed is a handler's named permanent one. A consumer that cannot read what the
//! contract let through (`schema`, `malformed`) or that fails it until the retry tiers give up
//! is the disagreement this run exists to find.
//!
//! The seed is fixed so CI is repeatable; `CONVEYOR_AGREEMENT_SEED=<n>` explores others.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conveyor::{Envelope, headers};
use events_schema::{EventContract, SCHEMAS, publishers};
use lapin::types::FieldTable;
use serde_json::{Value, json};

use crate::helpers::{self, ALL};

/// Random values generated per field, beside the edges.
const RANDOM_PER_FIELD: usize = 4;

/// How long every consumer may take to handle or refuse everything the contract accepted.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

/// One generated event: which field was changed, and to what.
struct Case {
    envelope: Envelope,
    field: String,
    value: String,
}

#[tokio::test]
async fn every_event_the_contract_accepts_is_handled_or_refused_for_good_by_each_consumer() {
    let seed = std::env::var("CONVEYOR_AGREEMENT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(20_261_206);
    let contract = EventContract::shared().unwrap();
    let cases = generate(seed);
    let (accepted, refused): (Vec<Case>, Vec<Case>) = cases
        .into_iter()
        .partition(|case| contract.validate_event(&sent_bytes(&case.envelope)).is_ok());
    assert!(
        !refused.is_empty() && !accepted.is_empty(),
        "the generator makes events of both kinds"
    );

    let system = helpers::start(&ALL, Duration::from_secs(3600)).await;
    let receivers = receivers_by_type();
    for case in &accepted {
        system.env.publish(&case.envelope).await;
    }
    let expected = expected_per_service(&accepted, &receivers);
    conveyor_testkit::wait_until_every(SETTLE_WITHIN, Duration::from_millis(200), || {
        all_settled(&system, &expected)
    })
    .await;
    let consumers: BTreeSet<String> = receivers.values().flatten().cloned().collect();
    let dead_letters = dead_letters(&system, &consumers).await;
    let stuck = unsettled(&system, &expected, &dead_letters).await;
    system.stop().await;

    let describe = describer(&accepted);
    let disagreements: Vec<String> =
        dead_letters
            .iter()
            .filter(|letter| !letter.is_a_handlers_refusal())
            .map(|letter| {
                let event = describe(&letter.event_id);
                let (service, kind, error) = (&letter.service, &letter.kind, &letter.error);
                format!("{service} dead-lettered {event} as {kind}: {error}")
            })
            .chain(stuck.iter().map(|(service, id)| {
                format!("{service} neither handled nor refused {}", describe(id))
            }))
            .collect();
    assert!(
        disagreements.is_empty(),
        "seed {seed}: {} of {} generated events were accepted by the contract; the consumers \
         disagree on these:\n{}",
        accepted.len(),
        accepted.len() + refused.len(),
        disagreements.join("\n")
    );
    eprintln!(
        "agreement, seed {seed}: {} events generated, {} refused by the contract, {} accepted \
         and each handled by every consumer ({} deliveries), {} refused for good by a handler",
        accepted.len() + refused.len(),
        refused.len(),
        accepted.len(),
        expected.values().map(BTreeSet::len).sum::<usize>(),
        dead_letters.len(),
    );
    for letter in &dead_letters {
        eprintln!(
            "  {} refused {}: {}",
            letter.service,
            describe(&letter.event_id),
            letter.error
        );
    }
}

/// Names a generated event by the field it changed and the value it was given.
fn describer(accepted: &[Case]) -> impl Fn(&uuid::Uuid) -> String + '_ {
    let by_id: BTreeMap<uuid::Uuid, &Case> = accepted.iter().map(|c| (c.envelope.id, c)).collect();
    move |id| {
        by_id.get(id).map_or_else(
            || format!("{id} (an event the services emitted)"),
            |case| {
                let (event_type, field) = (&case.envelope.event_type, &case.field);
                format!("{event_type} with {field} = {}", case.value)
            },
        )
    }
}

/// The body as it goes on the wire, read back as a consumer reads it.
fn sent_bytes(envelope: &Envelope) -> Value {
    serde_json::from_slice(&envelope.to_bytes()).unwrap()
}

/// Every event type's consumers, from the services' own declarations.
fn receivers_by_type() -> BTreeMap<String, Vec<String>> {
    let mut receivers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for service in system::service_events().unwrap() {
        for event_type in service.receives {
            receivers
                .entry(event_type)
                .or_default()
                .push(service.service.clone());
        }
    }
    receivers
}

fn expected_per_service(
    accepted: &[Case],
    receivers: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, BTreeSet<uuid::Uuid>> {
    let mut expected: BTreeMap<String, BTreeSet<uuid::Uuid>> = BTreeMap::new();
    for case in accepted {
        for service in receivers
            .get(&case.envelope.event_type)
            .into_iter()
            .flatten()
        {
            expected
                .entry(service.clone())
                .or_default()
                .insert(case.envelope.id);
        }
    }
    expected
}

/// The events each service has in its inbox, of those it should have handled.
async fn handled(
    system: &helpers::System,
    service: &str,
    ids: &BTreeSet<uuid::Uuid>,
) -> BTreeSet<uuid::Uuid> {
    let pool = sqlx::PgPool::connect(&system.database_url(service))
        .await
        .unwrap();
    let wanted: Vec<uuid::Uuid> = ids.iter().copied().collect();
    let handled: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT message_id FROM conveyor.inbox WHERE message_id = ANY($1)")
            .bind(&wanted)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    handled.into_iter().collect()
}

/// Whether every service has handled, or dead-lettered, as many events as it was sent
/// (dead letters are counted, not read, while waiting: reading takes them out).
async fn all_settled(
    system: &helpers::System,
    expected: &BTreeMap<String, BTreeSet<uuid::Uuid>>,
) -> bool {
    for (service, ids) in expected {
        let left = ids.len() - handled(system, service, ids).await.len();
        let dead = system
            .env
            .queue_len(&system.names.dead_letter_queue(service))
            .await;
        if left > usize::try_from(dead).unwrap() {
            return false;
        }
    }
    true
}

/// The (service, event) pairs neither handled nor among `letters`.
async fn unsettled(
    system: &helpers::System,
    expected: &BTreeMap<String, BTreeSet<uuid::Uuid>>,
    letters: &[DeadLetter],
) -> Vec<(String, uuid::Uuid)> {
    let mut missing = Vec::new();
    for (service, ids) in expected {
        let handled = handled(system, service, ids).await;
        missing.extend(
            ids.iter()
                .filter(|id| !handled.contains(id))
                .filter(|id| {
                    !letters
                        .iter()
                        .any(|letter| &letter.service == service && &letter.event_id == *id)
                })
                .map(|id| (service.clone(), *id)),
        );
    }
    missing
}

struct DeadLetter {
    service: String,
    event_id: uuid::Uuid,
    kind: String,
    error: String,
}

impl DeadLetter {
    /// A handler's own permanent refusal; not the database refusing what the contract let
    /// through (a `permanent` dead letter too, but one the contract should have caught).
    fn is_a_handlers_refusal(&self) -> bool {
        self.kind == "permanent" && !self.error.starts_with("error returned from database")
    }
}

/// Every dead letter of every consuming service, taken out of its queue.
async fn dead_letters(system: &helpers::System, consumers: &BTreeSet<String>) -> Vec<DeadLetter> {
    let mut letters = Vec::new();
    for service in consumers {
        let queue = system.names.dead_letter_queue(service);
        for letter in system.env.drain(&queue).await {
            let table = letter
                .properties
                .headers()
                .clone()
                .unwrap_or_else(FieldTable::default);
            let header = |name| {
                headers::get_str(&table, name)
                    .unwrap_or_default()
                    .to_owned()
            };
            let event_id = letter
                .properties
                .message_id()
                .as_ref()
                .and_then(|id| id.as_str().parse().ok())
                .unwrap_or_default();
            letters.push(DeadLetter {
                service: service.clone(),
                event_id,
                kind: header(headers::ERROR_KIND),
                error: header(headers::ERROR),
            });
        }
    }
    letters
}

/// Every schema's example with one integer or string field changed at a time.
fn generate(seed: u64) -> Vec<Case> {
    let mut random = SplitMix(seed);
    let mut cases = Vec::new();
    for schema in SCHEMAS {
        let text: Value = serde_json::from_str(schema.text).unwrap();
        let example = text["examples"][0].clone();
        assert!(
            example.is_object(),
            "{} v{} has no example to start from",
            schema.event_type,
            schema.version
        );
        let owner = publishers::owner_of(schema.event_type).unwrap();
        for (path, leaf) in leaves(&example) {
            let field = field_name(&path);
            let bounds = Bounds::of(&text, &path, schema.event_type, schema.version, &field);
            let values = match leaf {
                Value::Number(_) => integer_values(&bounds, &mut random),
                Value::String(text) => string_values(&text, &mut random),
                _ => Vec::new(),
            };
            for value in values {
                let mut data = example.clone();
                *pointer(&mut data, &path) = value.clone();
                let mut envelope = Envelope::new(owner, schema.event_type, data);
                envelope.dataschema = Some(format!(
                    "events-schema/{}/v{}",
                    schema.event_type, schema.version
                ));
                cases.push(Case {
                    envelope,
                    field: field.clone(),
                    value: shown(&value),
                });
            }
        }
    }
    cases
}

/// A path step into `data`: a key, or the first item of a list.
#[derive(Clone)]
enum Step {
    Key(String),
    First,
}

/// The integer and string leaves of `value` (of a list, its first item's), with their paths.
fn leaves(value: &Value) -> Vec<(Vec<Step>, Value)> {
    let mut found = Vec::new();
    walk(value, &mut Vec::new(), &mut found);
    found
}

fn walk(value: &Value, path: &mut Vec<Step>, found: &mut Vec<(Vec<Step>, Value)>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                path.push(Step::Key(key.clone()));
                walk(field, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                path.push(Step::First);
                walk(first, path, found);
                path.pop();
            }
        }
        Value::Number(_) | Value::String(_) => found.push((path.clone(), value.clone())),
        Value::Bool(_) | Value::Null => {}
    }
}

fn pointer<'a>(value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(value, |value, step| match step {
        Step::Key(key) => &mut value[key.as_str()],
        Step::First => &mut value[0],
    })
}

/// The field as `money::CEILINGS` names it: `items[].unit_price_cents`.
fn field_name(path: &[Step]) -> String {
    let mut name = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(key);
            }
            Step::First => name.push_str("[]"),
        }
    }
    name
}

/// What the contract says of one integer field: the schema's bounds and the money ceiling.
struct Bounds {
    minimum: Option<i64>,
    maximum: Option<i64>,
    ceiling: Option<i64>,
}

impl Bounds {
    fn of(schema: &Value, path: &[Step], event_type: &str, version: u32, field: &str) -> Self {
        let mut at = schema;
        for step in path {
            at = match step {
                Step::Key(key) => &at["properties"][key.as_str()],
                Step::First => &at["items"],
            };
        }
        Self {
            minimum: at["minimum"].as_i64(),
            maximum: at["maximum"].as_i64(),
            ceiling: events_schema::money::ceiling_of(event_type, version, field),
        }
    }
}

fn integer_values(bounds: &Bounds, random: &mut SplitMix) -> Vec<Value> {
    let mut values = vec![
        json!(0),
        json!(1),
        json!(-1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(1u64 << 63),
        json!(u64::MAX),
        json!(1.0),
        json!(-0.0),
        json!(0.5),
        json!(1e300),
    ];
    for edge in [bounds.minimum, bounds.maximum, bounds.ceiling]
        .into_iter()
        .flatten()
    {
        values.extend([
            json!(edge.saturating_sub(1)),
            json!(edge),
            json!(edge.saturating_add(1)),
        ]);
    }
    for _ in 0..RANDOM_PER_FIELD {
        values.push(json!(random.integer()));
    }
    values
}

fn string_values(example: &str, random: &mut SplitMix) -> Vec<Value> {
    let mut values = vec![
        json!(""),
        json!("A"),
        json!(example.to_uppercase()),
        json!(format!("{example}-")),
        json!(format!(" {example} ")),
        json!("x".repeat(255)),
        json!("x".repeat(10_000)),
        json!(format!("{example}\u{0}")),
        json!("\u{7}\u{1b}[31m"),
        json!("é漢字🙂"),
    ];
    for _ in 0..RANDOM_PER_FIELD {
        values.push(json!(random.text()));
    }
    values
}

/// A value as the failure message shows it: long strings cut.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!(
            "{}… ({} chars)",
            text.chars().take(40).collect::<String>(),
            text.len()
        )
    } else {
        text
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same events.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// An integer of a random magnitude (so small values come up as often as huge ones).
    fn integer(&mut self) -> i64 {
        let bits = self.below(64);
        let magnitude = self.next() >> (63 - bits.min(62));
        let value = i64::try_from(magnitude >> 1).unwrap_or(i64::MAX);
        if self.below(2) == 0 { value } else { -value }
    }

    /// A string of up to 300 characters drawn from letters, digits, punctuation, controls
    /// and characters beyond ASCII.
    fn text(&mut self) -> String {
        const POOL: &[char] = &[
            'A', 'Z', 'a', 'z', '0', '9', '-', '_', ' ', '.', '/', '\\', '%', '\'', '"', '\u{0}',
            '\u{1f}', '\u{7f}', 'é', 'ß', '漢', '🙂', '\u{200b}', '\u{fffd}',
        ];
        let length = self.below(300);
        (0..length)
            .map(|_| POOL[usize::try_from(self.below(POOL.len() as u64)).unwrap()])
            .collect()
    }
}
