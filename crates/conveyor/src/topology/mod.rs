//! The broker topology of DESIGN.md as data: declared idempotently at start-up and exported
//! as RabbitMQ definitions from the same description, so the two cannot drift.
//!
//! - `declare`: declaring it on a broker, upgrading queues an older release declared.
//! - `permissions`: each service's broker user and its least privileges.

mod declare;
mod permissions;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::{Value, json};

/// Quorum queues redeliver a message at most this often before the broker dead-letters it,
/// a backstop for a consumer that crashes on it; kept well above expected restarts.
pub const DELIVERY_LIMIT: i64 = 50;

/// `conveyor.unrouted` keeps at most this many events (the oldest go first): enough to see
/// what went wrong, never enough to fill the broker's memory or disk.
pub const UNROUTED_MAX_LENGTH: i64 = 100_000;

/// And each for at most a week.
pub const UNROUTED_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Names of every exchange and queue, optionally under a prefix (tests use one each).
///
/// A deployment sets the prefix with [`Names::PREFIX_VARIABLE`] (`CONVEYOR_NAME_PREFIX`),
/// read by [`Names::from_env`]: the same value for every service, the gateway and the
/// `conveyor` command of one system, so that a second system can share a broker (and its
/// vhost) with the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

/// The environment holds a name prefix that cannot work: see [`Names::PREFIX_RULE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is not valid: {rule}")]
pub struct NamesError {
    variable: &'static str,
    value: String,
    rule: &'static str,
}

impl NamesError {
    /// The variable that holds the value: `CONVEYOR_NAME_PREFIX`.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The value refused, as set (lossily decoded if it is not Unicode).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// A prefix is at most this long, so every name made from it stays far below the 255 bytes
/// RabbitMQ allows for names and routing keys.
const MAX_PREFIX_LEN: usize = 64;

impl Names {
    /// The setting that names everything under a prefix; unset or empty gives DESIGN.md's
    /// names.
    pub const PREFIX_VARIABLE: &'static str = "CONVEYOR_NAME_PREFIX";

    /// What [`Names::is_valid_prefix`] accepts, to tell whoever set a prefix that it refused.
    pub const PREFIX_RULE: &'static str = "a name prefix is 1 to 64 ASCII letters, digits, '-' or '_', \
         starting with a letter or digit, and not amq (RabbitMQ reserves names starting amq.); \
         empty (or unset) gives the default names";

    /// The names `CONVEYOR_NAME_PREFIX` sets: under its value, or DESIGN.md's when it is unset
    /// or empty. Read once by each process (a service's settings, the gateway's, each
    /// `conveyor` command), which passes the names on.
    ///
    /// # Errors
    /// [`NamesError`] naming the variable and the rule, when the value breaks
    /// [`Names::PREFIX_RULE`].
    pub fn from_env() -> Result<Self, NamesError> {
        let value = std::env::var_os(Self::PREFIX_VARIABLE);
        let text = value.as_ref().map(|value| value.to_string_lossy());
        Self::from_prefix_setting(text.as_deref())
    }

    /// The names for a value of `CONVEYOR_NAME_PREFIX` (`None` when it is unset), as
    /// [`Names::from_env`] reads it: the value is taken as it is, never trimmed.
    ///
    /// # Errors
    /// As [`Names::from_env`].
    pub fn from_prefix_setting(value: Option<&str>) -> Result<Self, NamesError> {
        match value {
            None | Some("") => Ok(Self::default()),
            Some(prefix) if Self::is_valid_prefix(prefix) => Ok(Self::with_prefix(prefix)),
            Some(prefix) => Err(NamesError {
                variable: Self::PREFIX_VARIABLE,
                value: prefix.to_owned(),
                rule: Self::PREFIX_RULE,
            }),
        }
    }

    /// Whether `prefix` is one a deployment may set ([`Names::PREFIX_RULE`]): every name
    /// made from it is a valid RabbitMQ name outside the reserved `amq.` ones, needs no
    /// quoting in a URL of the management API, and reads as a plain word in the permission
    /// regexes and the rabbitmqctl script of `conveyor topology users`. The empty prefix
    /// (the default names) is valid too.
    pub fn is_valid_prefix(prefix: &str) -> bool {
        if prefix.is_empty() {
            return true;
        }
        let starts_well = prefix
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric());
        starts_well
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !prefix.eq_ignore_ascii_case("amq")
    }

    /// `prefix` is put before every name with a dot; empty gives DESIGN.md's names.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix before every name; empty for DESIGN.md's names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` without this system's prefix (`orders.dlq` for `blue.orders.dlq` under the
    /// prefix `blue`); `None` for a name of another prefix's system.
    pub fn unqualified<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(name)
        } else {
            name.strip_prefix(self.prefix.as_str())?.strip_prefix('.')
        }
    }

    fn qualify(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Domain events, routed by event type.
    pub fn events_exchange(&self) -> String {
        self.qualify("conveyor.events")
    }

    /// Where events no queue is bound for end up (exchange and queue share the name).
    pub fn unrouted(&self) -> String {
        self.qualify("conveyor.unrouted")
    }

    /// Where events of known types that no service subscribes to go: dropped at once.
    pub fn unsubscribed(&self) -> String {
        self.qualify("conveyor.unsubscribed")
    }

    /// Where consumers send retry copies, routed by the name of the retry queue.
    pub fn retry_exchange(&self) -> String {
        self.qualify("conveyor.retry")
    }

    /// Where dead letters go, from consumers and from the broker past [`DELIVERY_LIMIT`],
    /// routed by service.
    pub fn dead_letter_exchange(&self) -> String {
        self.qualify("conveyor.dlx")
    }

    /// The queue `service` consumes the events it subscribes to from (`orders.events`).
    pub fn service_queue(&self, service: &str) -> String {
        self.qualify(&format!("{service}.events"))
    }

    /// The queue that holds `service`'s retries for `delay`, then hands them back to its
    /// queue (`orders.retry.10s`).
    pub fn retry_queue(&self, service: &str, delay: Duration) -> String {
        self.qualify(&format!("{service}.retry.{}", delay_label(delay)))
    }

    /// Where `service`'s dead letters wait for an operator (`orders.dlq`).
    pub fn dead_letter_queue(&self, service: &str) -> String {
        self.qualify(&format!("{service}.dlq"))
    }

    /// The queue a gentle replay watches its letters come back on, exclusive to the one
    /// process running it.
    pub fn replay_watch_queue(&self, run_id: &str) -> String {
        self.qualify(&format!("conveyor.replay.{run_id}"))
    }

    /// The operators' log of dead-letter replays, moves and purges.
    pub fn dead_letter_audit_queue(&self) -> String {
        self.qualify("conveyor.dlq-audit")
    }

    /// The broker user `service` connects as where each service has its own
    /// (`conveyor-orders`); `operator` names the account of `conveyor dlq` and
    /// `conveyor topology`. Users are per broker, not per vhost, so the prefix applies.
    pub fn broker_user(&self, service: &str) -> String {
        self.qualify(&format!("conveyor-{service}"))
    }

    /// The routing key on `conveyor.dlx` that reaches `<service>.dlq`.
    pub fn dead_letter_routing_key(&self, service: &str) -> String {
        service.to_owned()
    }
}

/// `1s`, `10s`, `1500ms`: a delay as it appears in a retry queue's name.
fn delay_label(delay: Duration) -> String {
    let millis = delay.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// What one service consumes: the event types its handlers registered and its retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTopology {
    /// The service's name, which names its queues.
    pub service: String,
    /// The event types its queue is bound to.
    pub event_types: BTreeSet<String>,
    /// The delays of its retry queues, one queue per delay.
    pub retry_tiers: Vec<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExchangeKind {
    Topic,
    Fanout,
    Direct,
}

impl ExchangeKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Fanout => "fanout",
            Self::Direct => "direct",
        }
    }

    fn to_lapin(self) -> lapin::ExchangeKind {
        match self {
            Self::Topic => lapin::ExchangeKind::Topic,
            Self::Fanout => lapin::ExchangeKind::Fanout,
            Self::Direct => lapin::ExchangeKind::Direct,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Argument {
    Text(String),
    Number(i64),
}

type Arguments = BTreeMap<&'static str, Argument>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct ExchangeSpec {
    name: String,
    kind: ExchangeKind,
    arguments: Arguments,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct QueueSpec {
    name: String,
    arguments: Arguments,
    upgrade: Upgrade,
}

/// What declaring does when the queue exists with other arguments (an older release's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    /// Delete it once it is empty (the broker checks, atomically) and declare it anew. Only
    /// for queues that every message reaches by a mandatory publish without an alternate
    /// exchange: one published while the queue is missing comes back to its publisher as
    /// unroutable and is sent again, never lost.
    ReplaceWhenEmpty,
    /// Keep it with its old arguments and say so: a message routed to it while it is
    /// missing would go elsewhere (the unrouted queue) or be dropped by the broker.
    KeepOld,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BindingSpec {
    exchange: String,
    queue: String,
    routing_key: String,
}

pub use declare::TopologyError;
pub use permissions::{BrokerUser, TopicPermission};

/// Exchanges, queues and bindings, all durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    exchanges: Vec<ExchangeSpec>,
    queues: Vec<QueueSpec>,
    bindings: Vec<BindingSpec>,
}

impl Topology {
    /// What every service relies on: the events, retry and dead-letter exchanges, the
    /// unrouted exchange and queue, and the dead-letter audit log.
    pub fn shared(names: &Names) -> Self {
        let unrouted = names.unrouted();
        let mut topology = Self::default();
        topology.exchange(
            names.events_exchange(),
            ExchangeKind::Topic,
            [("alternate-exchange", Argument::Text(unrouted.clone()))],
        );
        topology.exchange(unrouted.clone(), ExchangeKind::Fanout, []);
        topology.exchange(names.retry_exchange(), ExchangeKind::Direct, []);
        topology.exchange(names.dead_letter_exchange(), ExchangeKind::Direct, []);
        let max_age = i64::try_from(UNROUTED_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
        topology.queue(
            unrouted.clone(),
            quorum([
                ("x-max-length", Argument::Number(UNROUTED_MAX_LENGTH)),
                ("x-overflow", Argument::Text("drop-head".to_owned())),
                ("x-message-ttl", Argument::Number(max_age)),
            ]),
            Upgrade::KeepOld,
        );
        topology.bind(unrouted.clone(), unrouted, String::new());
        // Written to by `conveyor dlq` through the default exchange; small records, no limit.
        topology.queue(
            names.dead_letter_audit_queue(),
            quorum([]),
            Upgrade::KeepOld,
        );
        topology
    }

    /// Routes `event_types` (known types that no service subscribes to, like a saga's
    /// closing events) to a queue that keeps nothing: publishing them is normal in
    /// publish/subscribe, so they must neither pile up nor be counted as unrouted. A
    /// service that subscribes later gets its copies beside it.
    pub fn discard_unsubscribed(
        &mut self,
        names: &Names,
        event_types: impl IntoIterator<Item = String>,
    ) {
        let queue = names.unsubscribed();
        self.queue(
            queue.clone(),
            quorum([
                ("x-max-length", Argument::Number(0)),
                ("x-overflow", Argument::Text("drop-head".to_owned())),
            ]),
            Upgrade::ReplaceWhenEmpty,
        );
        for event_type in event_types {
            self.bind(names.events_exchange(), queue.clone(), event_type);
        }
    }

    /// The shared part plus one service's queue, bindings, retry tiers and dead-letter queue.
    pub fn for_service(names: &Names, service: &ServiceTopology) -> Self {
        let mut topology = Self::shared(names);
        topology.add_service(names, service);
        topology
    }

    /// Adds one service's queue, bindings, retry queues and dead-letter queue.
    pub fn add_service(&mut self, names: &Names, service: &ServiceTopology) {
        let name = &service.service;
        let queue = names.service_queue(name);
        let dead_letter_key = names.dead_letter_routing_key(name);
        self.queue(
            queue.clone(),
            quorum([
                ("x-delivery-limit", Argument::Number(DELIVERY_LIMIT)),
                (
                    "x-dead-letter-exchange",
                    Argument::Text(names.dead_letter_exchange()),
                ),
                (
                    "x-dead-letter-routing-key",
                    Argument::Text(dead_letter_key.clone()),
                ),
            ]),
            Upgrade::KeepOld,
        );
        for event_type in &service.event_types {
            self.bind(names.events_exchange(), queue.clone(), event_type.clone());
        }
        for delay in &service.retry_tiers {
            let retry_queue = names.retry_queue(name, *delay);
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            // Holds a message for the TTL, then hands it back to the service's own queue
            // through the default exchange. A quorum queue, so a retry survives the loss of
            // a node, with at-least-once dead-lettering (which needs reject-publish): the
            // message leaves only once the service's queue has confirmed it.
            self.queue(
                retry_queue.clone(),
                quorum([
                    ("x-message-ttl", Argument::Number(ttl)),
                    ("x-dead-letter-exchange", Argument::Text(String::new())),
                    ("x-dead-letter-routing-key", Argument::Text(queue.clone())),
                    (
                        "x-dead-letter-strategy",
                        Argument::Text("at-least-once".to_owned()),
                    ),
                    ("x-overflow", Argument::Text("reject-publish".to_owned())),
                ]),
                Upgrade::ReplaceWhenEmpty,
            );
            self.bind(names.retry_exchange(), retry_queue.clone(), retry_queue);
        }
        let dead_letter_queue = names.dead_letter_queue(name);
        self.queue(dead_letter_queue.clone(), quorum([]), Upgrade::KeepOld);
        self.bind(
            names.dead_letter_exchange(),
            dead_letter_queue,
            dead_letter_key,
        );
    }

    fn exchange<const N: usize>(
        &mut self,
        name: String,
        kind: ExchangeKind,
        arguments: [(&'static str, Argument); N],
    ) {
        self.exchanges.push(ExchangeSpec {
            name,
            kind,
            arguments: Arguments::from(arguments),
        });
    }

    fn queue(&mut self, name: String, arguments: Arguments, upgrade: Upgrade) {
        self.queues.push(QueueSpec {
            name,
            arguments,
            upgrade,
        });
    }

    fn bind(&mut self, exchange: String, queue: String, routing_key: String) {
        self.bindings.push(BindingSpec {
            exchange,
            queue,
            routing_key,
        });
    }

    /// Names of every queue, for cleanup and inspection.
    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queues.iter().map(|queue| queue.name.as_str())
    }

    /// Names of every exchange.
    pub fn exchange_names(&self) -> impl Iterator<Item = &str> {
        self.exchanges.iter().map(|exchange| exchange.name.as_str())
    }

    /// RabbitMQ's definitions format, importable with `rabbitmqctl import_definitions`.
    pub fn to_definitions(&self, vhost: &str) -> Value {
        let exchanges: Vec<Value> = self
            .exchanges
            .iter()
            .map(|exchange| {
                json!({
                    "name": exchange.name, "vhost": vhost, "type": exchange.kind.as_str(),
                    "durable": true, "auto_delete": false, "internal": false,
                    "arguments": json_arguments(&exchange.arguments),
                })
            })
            .collect();
        let queues: Vec<Value> = self
            .queues
            .iter()
            .map(|queue| {
                json!({
                    "name": queue.name, "vhost": vhost, "durable": true, "auto_delete": false,
                    "arguments": json_arguments(&queue.arguments),
                })
            })
            .collect();
        let bindings: Vec<Value> = self
            .bindings
            .iter()
            .map(|binding| {
                json!({
                    "source": binding.exchange, "vhost": vhost, "destination": binding.queue,
                    "destination_type": "queue", "routing_key": binding.routing_key,
                    "arguments": {},
                })
            })
            .collect();
        json!({
            "vhosts": [{ "name": vhost }],
            "exchanges": exchanges,
            "queues": queues,
            "bindings": bindings,
        })
    }
}

fn quorum<const N: usize>(extra: [(&'static str, Argument); N]) -> Arguments {
    let mut arguments = Arguments::from(extra);
    arguments.insert("x-queue-type", Argument::Text("quorum".to_owned()));
    arguments
}

fn field_table(arguments: &Arguments) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in arguments {
        let value = match value {
            Argument::Text(text) => AMQPValue::LongString(LongString::from(text.as_str())),
            Argument::Number(number) => AMQPValue::LongLongInt(*number),
        };
        table.insert(ShortString::from(*key), value);
    }
    table
}

fn json_arguments(arguments: &Arguments) -> Value {
    let map = arguments
        .iter()
        .map(|(key, value)| {
            let value = match value {
                Argument::Text(text) => json!(text),
                Argument::Number(number) => json!(number),
            };
            ((*key).to_owned(), value)
        })
        .collect::<serde_json::Map<_, _>>();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> ServiceTopology {
        ServiceTopology {
            service: "orders".into(),
            event_types: BTreeSet::from(["payment.captured".to_owned()]),
            retry_tiers: vec![Duration::from_secs(1), Duration::from_millis(1500)],
        }
    }

    #[test]
    fn a_service_gets_its_queue_bindings_retry_tiers_and_dead_letter_queue() {
        let names = Names::default();
        let topology = Topology::for_service(&names, &orders());
        let queues: Vec<_> = topology.queue_names().collect();
        assert_eq!(
            queues,
            [
                "conveyor.unrouted",
                "conveyor.dlq-audit",
                "orders.events",
                "orders.retry.1s",
                "orders.retry.1500ms",
                "orders.dlq"
            ]
        );
        let definitions = topology.to_definitions("/");
        let retry = &definitions["queues"][4];
        assert_eq!(retry["arguments"]["x-message-ttl"], 1500);
        // Replicated, and a retry leaves only once the service's queue confirmed it.
        assert_eq!(retry["arguments"]["x-queue-type"], "quorum");
        assert_eq!(
            retry["arguments"]["x-dead-letter-strategy"],
            "at-least-once"
        );
        assert_eq!(retry["arguments"]["x-overflow"], "reject-publish");
        // The backstop against a consumer that crashes on a message.
        let service_queue = &definitions["queues"][2];
        assert_eq!(
            service_queue["arguments"]["x-delivery-limit"],
            DELIVERY_LIMIT
        );
        assert_eq!(
            retry["arguments"]["x-dead-letter-routing-key"],
            "orders.events"
        );
        assert!(
            definitions["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|binding| {
                    binding["source"] == "conveyor.events"
                        && binding["routing_key"] == "payment.captured"
                })
        );
    }

    /// The book's promise for events nobody reads: `conveyor.unsubscribed` keeps none, and
    /// `conveyor.unrouted` keeps at most 100,000 for at most 7 days, the oldest dropped
    /// first. Checked in both forms the topology takes, the definitions file and the
    /// arguments `declare` sends the broker, so neither can lose a bound unseen.
    #[test]
    fn the_unrouted_and_unsubscribed_queues_are_bounded_as_documented() {
        let names = Names::default();
        let mut topology = Topology::shared(&names);
        topology.discard_unsubscribed(&names, ["order.completed".to_owned()]);
        assert_eq!(UNROUTED_MAX_LENGTH, 100_000);
        assert_eq!(UNROUTED_MAX_AGE, Duration::from_secs(7 * 24 * 3600));
        let unrouted = json!({
            "x-queue-type": "quorum",
            "x-max-length": 100_000,
            "x-message-ttl": 604_800_000,
            "x-overflow": "drop-head",
        });
        let unsubscribed = json!({
            "x-queue-type": "quorum",
            "x-max-length": 0,
            "x-overflow": "drop-head",
        });
        let definitions = topology.to_definitions("/");
        let exported = |name: &str| {
            definitions["queues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|queue| queue["name"] == name)
                .unwrap_or_else(|| panic!("{name} is not exported"))["arguments"]
                .clone()
        };
        assert_eq!(exported("conveyor.unrouted"), unrouted);
        assert_eq!(exported("conveyor.unsubscribed"), unsubscribed);
        for (name, expected) in [
            ("conveyor.unrouted", &unrouted),
            ("conveyor.unsubscribed", &unsubscribed),
        ] {
            let queue = topology
                .queues
                .iter()
                .find(|queue| queue.name == name)
                .unwrap_or_else(|| panic!("{name} is not declared"));
            assert_eq!(
                &declared(&field_table(&queue.arguments)),
                expected,
                "{name}"
            );
        }
    }

    /// The arguments of a declare as JSON, to compare with the definitions' form.
    fn declared(table: &FieldTable) -> Value {
        let arguments = table
            .inner()
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    AMQPValue::LongString(text) => json!(text.to_string()),
                    AMQPValue::LongLongInt(number) => json!(number),
                    other => panic!("{key}: an argument of an unexpected type, {other:?}"),
                };
                (key.to_string(), value)
            })
            .collect::<serde_json::Map<_, _>>();
        Value::Object(arguments)
    }

    #[test]
    fn the_prefix_setting_gives_the_default_names_when_unset_or_empty() {
        assert_eq!(Names::from_prefix_setting(None), Ok(Names::default()));
        assert_eq!(Names::from_prefix_setting(Some("")), Ok(Names::default()));
        assert_eq!(
            Names::default().events_exchange(),
            "conveyor.events",
            "DESIGN.md's names"
        );
    }

    #[test]
    fn the_prefix_setting_names_everything_under_a_valid_prefix() {
        let names = Names::from_prefix_setting(Some("blue")).unwrap();
        assert_eq!(names, Names::with_prefix("blue"));
        assert_eq!(names.events_exchange(), "blue.conveyor.events");
        assert_eq!(names.dead_letter_queue("orders"), "blue.orders.dlq");
        assert_eq!(names.broker_user("orders"), "blue.conveyor-orders");
        // What the tests and the benchmark use, and the longest allowed.
        let longest = "a".repeat(64);
        for prefix in [
            "t1",
            "bu0123abcd",
            "lp0123abcd",
            "bench-0123abcd",
            "Team_2",
            "9",
            longest.as_str(),
        ] {
            assert_eq!(
                Names::from_prefix_setting(Some(prefix)).map(|names| names.prefix().to_owned()),
                Ok(prefix.to_owned()),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn the_prefix_setting_refuses_what_rabbitmq_or_the_tools_cannot_take() {
        let too_long = "a".repeat(65);
        for bad in [
            " ",
            " blue",
            "blue ",
            "a b",
            "a.b",
            ".blue",
            "-blue",
            "_blue",
            "blue/green",
            "blue*",
            "it's",
            "bl\u{fc}e",
            "amq",
            "AMQ",
            "\u{fffd}",
            too_long.as_str(),
        ] {
            let error = Names::from_prefix_setting(Some(bad)).unwrap_err();
            assert_eq!(error.variable(), "CONVEYOR_NAME_PREFIX");
            assert_eq!(error.value(), bad);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("CONVEYOR_NAME_PREFIX={bad:?} is not valid: ")),
                "{message}"
            );
            assert!(message.ends_with(Names::PREFIX_RULE), "{message}");
            assert!(!Names::is_valid_prefix(bad), "{bad:?}");
        }
        // amq is refused only as the whole prefix: `amqx.conveyor.events` is not reserved.
        assert!(Names::from_prefix_setting(Some("amqx")).is_ok());
    }

    #[test]
    fn a_prefix_applies_to_every_name() {
        let names = Names::with_prefix("t1");
        let topology = Topology::for_service(&names, &orders());
        assert!(topology.queue_names().all(|name| name.starts_with("t1.")));
        assert!(
            topology
                .exchange_names()
                .all(|name| name.starts_with("t1."))
        );
    }
}
