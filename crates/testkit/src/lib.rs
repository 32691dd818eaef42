//! Test support for Conveyor's crates: a fresh, real RabbitMQ vhost and Postgres database
//! for each test, removed when it ends, and a recording test service whose handler does what
//! each event asks (succeed, fail in a chosen way, panic).

mod broker;
mod cluster_faults;
mod database;
mod frozen_link;
mod service_binary;

use std::time::Duration;

use conveyor::{AmqpConfig, Consumer, Envelope, EventHandler, HandlerContext, HandlerError, Names};
use conveyor::{ConsumerOptions, Shutdown, ShutdownTrigger};
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Connection};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use broker::Broker;
pub use cluster_faults::{FaultLock, KilledNode};
pub use database::TestDatabase;
pub use frozen_link::FreezableLink;
pub use service_binary::{check_quiet_start_and_stop, check_service_binary};

pub const SERVICE: &str = "ledger";
pub const EVENT_TYPE: &str = "test.happened";

fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// One test's own vhost and database.
pub struct TestEnv {
    pub broker: Broker,
    pub vhost: String,
    pub database: String,
    /// More databases made with [`TestEnv::create_database`], dropped with the rest.
    extra_databases: std::sync::Mutex<Vec<String>>,
    /// Broker users made with [`TestEnv::add_broker_user`], deleted with the vhost.
    broker_users: std::sync::Mutex<Vec<String>>,
    pub amqp: AmqpConfig,
    pub pool: PgPool,
    pub names: Names,
}

/// Every span the test binary finished, as an OTLP exporter would have sent it.
static FINISHED_SPANS: std::sync::OnceLock<KeptSpans> = std::sync::OnceLock::new();

/// An exporter that keeps what it is given. (The SDK's own in-memory exporter needs its
/// `testing` feature, which builds tokio and the SDK once more for the tests.)
#[derive(Debug, Clone, Default)]
struct KeptSpans(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanExporter for KeptSpans {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

/// One OpenTelemetry-backed subscriber for the whole test binary: tracing's per-thread
/// subscribers do not reach the runtime's worker threads. Its spans are kept in memory,
/// exported as each one ends, for [`finished_spans`].
fn install_tracing() {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let exporter = FINISHED_SPANS.get_or_init(Default::default).clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        // TEST_LOG=<filter> (as RUST_LOG) prints the services' logs beside the test's output.
        let logs = std::env::var("TEST_LOG").ok().map(|filter| {
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new(filter))
        });
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("conveyor-test")))
            .with(logs);
        // Another OpenTelemetry-backed subscriber (a service's) may be installed already.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The spans finished so far in this test binary, of every test: tests run at once, so pick
/// yours by trace id. Empty when another subscriber was installed first.
pub fn finished_spans() -> Vec<opentelemetry_sdk::trace::SpanData> {
    FINISHED_SPANS
        .get()
        .map(|kept| {
            kept.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
        .unwrap_or_default()
}

impl TestEnv {
    /// A vhost on the local broker, and a database.
    pub async fn new() -> Self {
        Self::on(Broker::local()).await
    }

    /// A vhost on `broker`, and a database.
    pub async fn on(broker: Broker) -> Self {
        install_tracing();
        let id = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let vhost = format!("conveyor-test-{id}");
        broker.ctl(&["add_vhost", &vhost]);
        broker.ctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let database = format!("conveyor_test_{id}");
        database::create_database(&database).await;
        let url = database_url(&database);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .unwrap();
        conveyor::install(&pool).await.unwrap();
        sqlx::query(
            "CREATE TABLE handled (message_id UUID NOT NULL, n BIGINT NOT NULL,
             previous_attempts INT NOT NULL, trace_id TEXT, handled_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
             txid BIGINT NOT NULL DEFAULT txid_current())",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE checked_at_commit (n BIGINT NOT NULL,
             CONSTRAINT one_row_per_event UNIQUE (n) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("CREATE TABLE bug AS SELECT false AS fixed")
            .execute(&pool)
            .await
            .unwrap();
        let amqp = AmqpConfig::new(broker.url(&vhost), format!("test {vhost}"));
        Self {
            broker,
            vhost,
            database,
            extra_databases: std::sync::Mutex::default(),
            broker_users: std::sync::Mutex::default(),
            amqp,
            pool,
            names: Names::default(),
        }
    }

    /// A link to the broker (its first node) that the test can freeze, and the AMQP
    /// settings of this test's vhost through it.
    pub async fn freezable_link(&self, connection_name: &str) -> (FreezableLink, AmqpConfig) {
        let link = FreezableLink::start(self.broker.first_address()).await;
        let url = format!("amqp://guest:guest@{}/{}", link.address(), self.vhost);
        (link, AmqpConfig::new(url, connection_name))
    }

    /// Makes `user` on the broker with a new password and its permissions in this test's
    /// vhost, as `conveyor topology users` would; deleted with the vhost. Answers the AMQP
    /// settings that connect as it.
    pub fn add_broker_user(&self, user: &conveyor::BrokerUser) -> AmqpConfig {
        let password = Uuid::new_v4().simple().to_string();
        self.broker.ctl(&["add_user", &user.name, &password]);
        self.broker_users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(user.name.clone());
        self.broker.ctl(&[
            "set_permissions",
            "-p",
            &self.vhost,
            &user.name,
            &user.configure,
            &user.write,
            &user.read,
        ]);
        if let Some(topic) = &user.topic {
            self.broker.ctl(&[
                "set_topic_permissions",
                "-p",
                &self.vhost,
                &user.name,
                &topic.exchange,
                &topic.write,
                &topic.read,
            ]);
        }
        AmqpConfig::new(
            self.broker.url_as(&user.name, &password, &self.vhost),
            format!("test {} as {}", self.vhost, user.name),
        )
    }

    /// Declares a topology up front, so events published before a consumer starts are queued.
    pub async fn declare(&self, topology: &conveyor::Topology) {
        let connection = self.connect().await;
        topology.declare(&connection).await.unwrap();
        connection.close(200, "done".into()).await.unwrap();
    }

    /// Another database of this test's own (one per service, say); returns its URL.
    pub async fn create_database(&self, suffix: &str) -> String {
        let name = format!("{}_{suffix}", self.database);
        database::create_database(&name).await;
        self.extra_databases.lock().unwrap().push(name.clone());
        database_url(&name)
    }

    pub fn database_url(&self) -> String {
        database_url(&self.database)
    }

    pub async fn connect(&self) -> Connection {
        self.amqp.connect().await.unwrap()
    }

    /// Publishes raw bytes to `conveyor.events`, as a producer outside Conveyor would.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        channel
            .basic_publish(
                self.names.events_exchange().as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();
    }

    /// Puts each `(body, properties)` straight into the test service's dead-letter queue,
    /// persistent and confirmed, as a consumer would have left it.
    pub async fn put_dead_letters(&self, letters: Vec<(Vec<u8>, BasicProperties)>) {
        let connection = self.connect().await;
        let channel = conveyor::ConfirmChannel::open(&connection, &self.amqp.user())
            .await
            .unwrap();
        let messages: Vec<_> = letters
            .into_iter()
            .map(|(body, properties)| conveyor::OutgoingMessage {
                exchange: String::new(),
                routing_key: self.names.dead_letter_queue(SERVICE),
                body,
                properties: properties.with_delivery_mode(2),
            })
            .collect();
        channel.publish_all(&messages).await.unwrap();
        connection.close(200, "done".into()).await.unwrap();
    }

    pub async fn publish(&self, envelope: &Envelope) {
        let props = BasicProperties::default().with_message_id(envelope.id.to_string().into());
        self.publish_raw(&envelope.event_type, &envelope.to_bytes(), props)
            .await;
    }

    /// Messages waiting in `queue`.
    pub async fn queue_len(&self, queue: &str) -> u32 {
        self.declare_passive(queue).await.message_count()
    }

    /// How many consumers read `queue` now.
    pub async fn consumer_count(&self, queue: &str) -> u32 {
        self.declare_passive(queue).await.consumer_count()
    }

    /// Waits until nothing consumes from `queue`: after a client is killed, the broker needs
    /// a moment to notice and return what it held.
    pub async fn wait_for_no_consumers(&self, queue: &str) {
        let gone = wait_until(Duration::from_secs(30), || async {
            self.declare_passive(queue).await.consumer_count() == 0
        })
        .await;
        assert!(gone, "{queue} still has consumers after 30 s");
    }

    async fn declare_passive(&self, queue: &str) -> lapin::Queue {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        let declared = conveyor::declare_passive(&channel, queue).await.unwrap();
        connection.close(200, "done".into()).await.unwrap();
        declared
    }

    /// Takes every message out of `queue`.
    pub async fn drain(&self, queue: &str) -> Vec<lapin::message::Delivery> {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        let mut taken = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            taken.push(message.delivery);
        }
        connection.close(200, "done".into()).await.unwrap();
        taken
    }

    /// Makes [`Behaviour::UntilFixed`] events succeed from now on.
    pub async fn fix_the_bug(&self) {
        sqlx::query("UPDATE bug SET fixed = true")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// The type of `queue` (`classic`, `quorum`), as the broker reports it.
    pub fn queue_type(&self, queue: &str) -> String {
        self.broker
            .ctl(&[
                "list_queues",
                "-p",
                &self.vhost,
                "name",
                "type",
                "--no-table-headers",
            ])
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| *name == queue)
            .map(|(_, kind)| kind.trim().to_owned())
            .unwrap_or_else(|| panic!("no queue {queue} in {}", self.vhost))
    }

    /// Binds a full queue that refuses new messages (`x-max-length` 0, `reject-publish`) to
    /// `routing_key` on the events exchange, so the broker nacks every event of that type.
    /// The queue is `refuses-<routing_key>`: delete it to let them through.
    pub async fn refuse(&self, routing_key: &str) {
        use lapin::types::{AMQPValue, FieldTable, LongString};
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString(LongString::from("reject-publish")),
        );
        self.bind_queue(&format!("refuses-{routing_key}"), routing_key, arguments)
            .await;
    }

    /// Declares a durable `queue` bound to `routing_key` on the events exchange.
    pub async fn declare_bound_queue(&self, queue: &str, routing_key: &str) {
        self.bind_queue(queue, routing_key, Default::default())
            .await;
    }

    async fn bind_queue(
        &self,
        queue: &str,
        routing_key: &str,
        arguments: lapin::types::FieldTable,
    ) {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.unwrap();
        channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.into(),
                self.names.events_exchange().as_str().into(),
                routing_key.into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
        connection.close(200, "done".into()).await.unwrap();
    }

    pub fn close_all_connections(&self) {
        self.broker.ctl(&[
            "close_all_connections",
            "-p",
            &self.vhost,
            "fault injected by a test",
        ]);
    }

    pub async fn handled_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM handled")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Rows of `handled` per distinct event number: equal counts mean nothing was applied twice.
    pub async fn handled_and_distinct(&self) -> (i64, i64) {
        sqlx::query_as("SELECT count(*), count(DISTINCT n) FROM handled")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until `handled` holds at least `expected` rows.
    pub async fn wait_for_handled(&self, expected: i64, within: Duration) {
        if !wait_until(within, || async { self.handled_count().await >= expected }).await {
            panic!(
                "expected {expected} handled events within {within:?}, saw {}",
                self.handled_count().await
            );
        }
    }

    /// Starts the test service's consumer in the background.
    pub async fn start_consumer(&self, options: ConsumerOptions) -> RunningConsumer {
        self.run_consumer(options, self.pool.clone()).await
    }

    /// Starts one more instance of the test service's consumer, with its own connection
    /// pool, as another process of the same service would run.
    pub async fn start_replica(&self, options: ConsumerOptions) -> RunningConsumer {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&self.database_url())
            .await
            .unwrap();
        self.run_consumer(options, pool).await
    }

    async fn run_consumer(&self, options: ConsumerOptions, pool: PgPool) -> RunningConsumer {
        let consumer = test_consumer(options);
        self.declare(&consumer.topology()).await;
        let stats = consumer.stats();
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(consumer.run(self.amqp.clone(), pool, shutdown));
        RunningConsumer {
            trigger,
            task,
            stats,
        }
    }

    /// The value of a counter that [`TestEvent::counter`] adds to.
    pub async fn counter(&self, name: &str) -> i64 {
        sqlx::query_scalar("SELECT coalesce((SELECT value FROM counters WHERE name = $1), 0)")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Asks `condition` every 50 ms until it holds; false when `within` passed first.
pub async fn wait_until<F, Fut>(within: Duration, condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_every(within, Duration::from_millis(50), condition).await
}

/// Asks `condition` every `every` until it holds; false when `within` passed first.
pub async fn wait_until_every<F, Fut>(within: Duration, every: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let wait = async {
        while !condition().await {
            tokio::time::sleep(every).await;
        }
    };
    tokio::time::timeout(within, wait).await.is_ok()
}

/// Closes `database` to new connections and ends every open one, as a Postgres restart or
/// failover would (`allowed = false`), or opens it again.
pub async fn allow_connections(database: &str, allowed: bool) {
    let admin = PgPool::connect(&postgres_admin_url()).await.unwrap();
    let quoted = database.replace('"', "\"\"");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{quoted}\" ALLOW_CONNECTIONS {allowed}"
    )))
    .execute(&admin)
    .await
    .unwrap();
    if !allowed {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(database)
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
}

pub fn database_url(database: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{database}")
}

/// Drops `databases` (ending their connections) from synchronous code, such as `drop`.
fn drop_databases(databases: Vec<String>) {
    // Async clean-up cannot run in `drop`; a thread with its own runtime can.
    let first = databases.first().cloned().unwrap_or_default();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let admin = PgPool::connect(&postgres_admin_url()).await?;
            for database in databases {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
            }
            Ok::<(), sqlx::Error>(())
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop test database {first}");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let mut databases = vec![self.database.clone()];
        databases.extend(
            self.extra_databases
                .lock()
                .map(|extra| extra.clone())
                .unwrap_or_default(),
        );
        drop_databases(databases);
        self.broker.ctl_quietly(&["delete_vhost", &self.vhost]);
        let users = self
            .broker_users
            .lock()
            .map(|users| users.clone())
            .unwrap_or_default();
        for user in users {
            self.broker.ctl_quietly(&["delete_user", &user]);
        }
    }
}

pub struct RunningConsumer {
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
    pub stats: std::sync::Arc<conveyor::ConsumerStats>,
}

impl RunningConsumer {
    /// Asks for a graceful stop and waits for it.
    pub async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("consumer stops within 30 s")
            .unwrap();
    }
}

/// What a test event asks its handler to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestEvent {
    pub n: i64,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// The keys it is serialized on, instead of the envelope's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// A counter in `counters` to add one to by reading, pausing and writing back: two
    /// handlers of the same counter running at once lose one of the additions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
}

impl conveyor::Event for TestEvent {
    const TYPE: &'static str = EVENT_TYPE;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    #[default]
    Succeed,
    Permanent,
    /// Fails transiently on this many attempts, then succeeds.
    TransientTimes(u32),
    Panic,
    /// Fails permanently until the test calls [`TestEnv::fix_the_bug`], like a handler with
    /// a bug that a later deploy fixes.
    UntilFixed,
    /// Writes what breaks a deferred constraint: every statement succeeds and the
    /// transaction's COMMIT fails, every time.
    FailsAtCommit,
    /// Writes a row that breaks a NOT NULL constraint, returning the `sqlx::Error` as is.
    ViolatesConstraint,
    /// A statement the database cancels (statement timeout) on this many attempts, returning
    /// the `sqlx::Error` as is; then succeeds.
    TimesOutTimes(u32),
}

/// Records each event it handles in `handled`, within the handling transaction.
pub struct RecordingHandler;

impl EventHandler for RecordingHandler {
    type Event = TestEvent;

    fn keys(&self, event: &TestEvent, meta: &conveyor::EventMeta) -> Vec<String> {
        event
            .keys
            .clone()
            .unwrap_or_else(|| meta.subject.iter().cloned().collect())
    }

    async fn handle(
        &self,
        event: TestEvent,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        let previous_attempts = ctx.event().previous_attempts;
        match event.behaviour {
            Behaviour::Succeed => {}
            Behaviour::Permanent => {
                return Err(HandlerError::permanent(anyhow::anyhow!(
                    "event {} can never be applied",
                    event.n
                )));
            }
            Behaviour::TransientTimes(times) if previous_attempts < times => {
                return Err(HandlerError::transient(anyhow::anyhow!(
                    "downstream unavailable"
                )));
            }
            Behaviour::TransientTimes(_) => {}
            Behaviour::FailsAtCommit => {
                sqlx::query("INSERT INTO checked_at_commit (n) VALUES ($1), ($1)")
                    .bind(event.n)
                    .execute(ctx.tx())
                    .await?;
            }
            Behaviour::ViolatesConstraint => {
                sqlx::query("INSERT INTO counters (name, value) VALUES (NULL, $1)")
                    .bind(event.n)
                    .execute(ctx.tx())
                    .await?;
            }
            Behaviour::TimesOutTimes(times) if previous_attempts < times => {
                sqlx::query("SET LOCAL statement_timeout = 1")
                    .execute(ctx.tx())
                    .await?;
                sqlx::query("SELECT pg_sleep(1)").execute(ctx.tx()).await?;
            }
            Behaviour::TimesOutTimes(_) => {}
            Behaviour::Panic => panic!("handler bug on event {}", event.n),
            Behaviour::UntilFixed => {
                let fixed: bool = sqlx::query_scalar("SELECT fixed FROM bug")
                    .fetch_one(ctx.tx())
                    .await?;
                if !fixed {
                    return Err(HandlerError::permanent(anyhow::anyhow!(
                        "bug: cannot apply event {} to account {}",
                        event.n,
                        event.n * 7 + 1000
                    )));
                }
            }
        }
        if let Some(counter) = &event.counter {
            add_one_slowly(ctx, counter).await?;
        }
        let trace_id = current_trace_id();
        let message_id = ctx.event().id;
        sqlx::query("INSERT INTO handled (message_id, n, previous_attempts, trace_id) VALUES ($1, $2, $3, $4)")
            .bind(message_id)
            .bind(event.n)
            .bind(i32::try_from(previous_attempts).unwrap_or(i32::MAX))
            .bind(trace_id)
            .execute(ctx.tx())
            .await?;
        Ok(())
    }
}

/// A read-modify-write with no row lock of its own, so only the runtime's per-key lock keeps
/// two additions to one counter apart.
async fn add_one_slowly(ctx: &mut HandlerContext<'_>, counter: &str) -> Result<(), HandlerError> {
    let value: i64 =
        sqlx::query_scalar("SELECT coalesce((SELECT value FROM counters WHERE name = $1), 0)")
            .bind(counter)
            .fetch_one(ctx.tx())
            .await?;
    sqlx::query("SELECT pg_sleep(0.002)")
        .execute(ctx.tx())
        .await?;
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(counter)
    .bind(value + 1)
    .execute(ctx.tx())
    .await?;
    Ok(())
}

fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

pub fn test_consumer(options: ConsumerOptions) -> Consumer {
    Consumer::builder(SERVICE)
        .handler(RecordingHandler)
        .options(options)
        .build()
        .unwrap()
}

pub fn fast_retries() -> ConsumerOptions {
    ConsumerOptions {
        retry_tiers: vec![Duration::from_millis(300), Duration::from_millis(600)],
        ..ConsumerOptions::default()
    }
}

pub fn event(n: i64) -> Envelope {
    event_with(n, serde_json::json!({ "n": n }))
}

pub fn event_with(n: i64, data: serde_json::Value) -> Envelope {
    Envelope::new("producer", EVENT_TYPE, data).with_subject(format!("item-{n}"))
}
