//! `conveyor bench runtime`: the runtime's throughput beside raw lapin and Postgres,
//! measured in the same run on the same broker and database, as ratios.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use conveyor::{
    AmqpConfig, Consumer, ConsumerOptions, Envelope, EventHandler, HandlerContext, HandlerError,
    Names, Outbox, OutboxRelay, ServiceTopology, Shutdown, Topology,
};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use sqlx::PgPool;

pub(super) const BENCH_SERVICE: &str = "bench";
pub(super) const BENCH_EVENT: &str = "bench.event";
/// The routing key of the raw publish through `conveyor.events`.
const RAW_EVENT: &str = "bench.raw";
const CONFIRMS_IN_FLIGHT: usize = 1000;
const PG_CONNECTIONS: u32 = 8;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Outbox relay and consumer-with-inbox throughput beside raw lapin publish/consume and
    /// raw Postgres commits. Uses its own prefixed queues and the database at
    /// BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/conveyor_bench,
    /// created if missing); removes its queues when done.
    Runtime {
        /// Messages per measurement.
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        /// Runs; the median of each figure is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Scheduled delivery: events scheduled evenly over --over seconds, and how late each
    /// reaches its consumer (p50, p99, max, on the database's clock); then the relay's
    /// throughput with an empty schedule and with --later rows not yet due, in interleaved
    /// rounds, with the ratio. Uses BENCH_DATABASE_URL as `runtime` does.
    Schedule {
        /// Events scheduled for the lateness figure.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Seconds over which their due times are spread.
        #[arg(long, default_value_t = 60)]
        over: u64,
        /// Rows not yet due in the schedule during the relay's loaded rounds.
        #[arg(long, default_value_t = 1_000_000)]
        later: u64,
        /// Events the relay sends per round: enough for several seconds of sending, so the
        /// relay's start (connecting, electing a leader, its first look at the schedule)
        /// weighs little in a round's rate.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Rounds of each kind; the median of each is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// What the API gateway adds to a request: the same authenticated GET offered at a fixed
    /// rate straight to inventory and through the gateway, in alternating rounds, with the
    /// p50 and p99 of each. Starts users, inventory and the gateway in this process on the
    /// usual databases (USERS_DATABASE_URL, INVENTORY_DATABASE_URL).
    Gateway {
        /// Requests per second offered.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// Seconds each round lasts.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds per target.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The operators' console over one dead-letter queue of --letters letters: each page's
    /// answer time and weight, the queue's count on the dead-letter page, how soon a scan
    /// streams its first groups, a whole scan, and the console's peak resident memory
    /// (`conveyor console` runs as a process of its own). Uses a vhost of its own on the
    /// broker at AMQP_URL (its user must be an administrator), removed at the end, and starts
    /// users here on USERS_DATABASE_URL.
    Console {
        /// Dead letters in inventory's queue.
        #[arg(long, default_value_t = 1_000_000)]
        letters: u64,
        /// Times each page and a scan's first groups are asked for; medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Runtime {
            messages,
            runs,
            json,
        } => runtime(messages, runs, json).await,
        BenchCommand::Schedule {
            events,
            over,
            later,
            messages,
            rounds,
            json,
        } => {
            let load = super::bench_schedule::ScheduleLoad {
                events,
                over,
                later,
                messages,
                rounds,
            };
            super::bench_schedule::run(load, json).await
        }
        BenchCommand::Gateway {
            rate,
            seconds,
            rounds,
            json,
        } => {
            let load = super::bench_gateway::GatewayLoad {
                rate,
                seconds,
                rounds,
            };
            super::bench_gateway::run(load, json).await
        }
        BenchCommand::Console {
            letters,
            rounds,
            json,
        } => {
            let load = super::bench_console::ConsoleLoad { letters, rounds };
            super::bench_console::run(load, json).await
        }
    }
}

/// One run's figures, per second.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    raw_publish: f64,
    raw_publish_events: f64,
    relay: f64,
    raw_consume: f64,
    consumer: f64,
    pg_commits: f64,
}

pub(super) struct Bench {
    pub(super) amqp: AmqpConfig,
    pub(super) pool: PgPool,
    pub(super) names: Names,
    topology: Topology,
    raw_queue: String,
    /// Bound to `conveyor.events`, for the raw publish along the relay's path.
    raw_events_queue: String,
    messages: u64,
}

/// The benchmark empties the outbox and inbox of its database: never a service's.
async fn refuse_a_real_database(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        name.contains("bench"),
        "BENCH_DATABASE_URL names the database {name:?}, whose outbox and inbox the benchmark \
         would empty; point it at a database kept for benchmarks (its name must contain \"bench\")"
    );
    Ok(())
}

async fn runtime(messages: u64, runs: usize, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        messages > 0 && runs > 0,
        "--messages and --runs must be at least 1"
    );
    let (bench, connection) = Bench::open(messages).await?;
    let progress = ProgressBar::new((runs * 5) as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut all_runs = Vec::with_capacity(runs);
    let outcome = async {
        for run in 1..=runs {
            all_runs.push(bench.run_once(&connection, &progress, run).await?);
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish_and_clear();
    bench.remove_queues(&connection).await;
    outcome?;
    report(&median(&all_runs), messages, runs, json);
    Ok(())
}

impl Bench {
    /// The benchmark's database (BENCH_DATABASE_URL) with the runtime's tables, and queues
    /// of its own under a fresh prefix, declared on the connection returned.
    pub(super) async fn open(messages: u64) -> anyhow::Result<(Self, Connection)> {
        let database_url = std::env::var("BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/conveyor_bench".to_owned());
        let pool = platform::connect_or_create(&database_url, PG_CONNECTIONS + 2).await?;
        refuse_a_real_database(&pool).await?;
        conveyor::install(&pool).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_rows (id BIGSERIAL PRIMARY KEY, value BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await?;
        let names = Names::with_prefix(format!(
            "bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let service = ServiceTopology {
            service: BENCH_SERVICE.to_owned(),
            event_types: [BENCH_EVENT.to_owned()].into(),
            retry_tiers: vec![Duration::from_secs(1)],
        };
        let bench = Self {
            amqp: AmqpConfig::from_env("conveyor bench"),
            pool,
            raw_queue: format!("{}.raw", names.events_exchange()),
            raw_events_queue: format!("{}.raw-events", names.events_exchange()),
            topology: Topology::for_service(&names, &service),
            names,
            messages,
        };
        let connection = bench.amqp.connect().await?;
        bench.declare(&connection).await?;
        Ok((bench, connection))
    }

    async fn declare(&self, connection: &Connection) -> anyhow::Result<()> {
        self.topology.declare(connection).await?;
        let channel = connection.create_channel().await?;
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        for queue in [&self.raw_queue, &self.raw_events_queue] {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    quorum.clone(),
                )
                .await?;
        }
        channel
            .queue_bind(
                self.raw_events_queue.as_str().into(),
                self.names.events_exchange().as_str().into(),
                RAW_EVENT.into(),
                Default::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    async fn run_once(
        &self,
        connection: &Connection,
        progress: &ProgressBar,
        run: usize,
    ) -> anyhow::Result<Figures> {
        let mut figures = Figures::default();
        progress.set_message(format!("run {run}: raw publish"));
        figures.raw_publish = self.raw_publish(connection).await?;
        figures.raw_publish_events = self.raw_publish_events(connection).await?;
        progress.inc(1);
        progress.set_message(format!("run {run}: raw consume"));
        figures.raw_consume = self.raw_consume(connection).await?;
        progress.inc(1);
        progress.set_message(format!("run {run}: postgres commits"));
        figures.pg_commits = self.pg_commits().await?;
        progress.inc(1);
        progress.set_message(format!("run {run}: outbox relay"));
        figures.relay = self.relay().await?;
        progress.inc(1);
        progress.set_message(format!("run {run}: consumer with inbox"));
        figures.consumer = self.consumer().await?;
        progress.inc(1);
        Ok(figures)
    }

    /// 1 KiB persistent messages to a quorum queue with a window of confirms in flight,
    /// through the default exchange: the broker's fastest path.
    async fn raw_publish(&self, connection: &Connection) -> anyhow::Result<f64> {
        self.publish_window(connection, "", &self.raw_queue, false)
            .await
    }

    /// The same through `conveyor.events` (a topic exchange, mandatory), the path every
    /// event takes, the relay's included; then those messages are dropped.
    async fn raw_publish_events(&self, connection: &Connection) -> anyhow::Result<f64> {
        let exchange = self.names.events_exchange();
        let rate = self
            .publish_window(connection, &exchange, RAW_EVENT, true)
            .await?;
        let channel = connection.create_channel().await?;
        channel
            .queue_purge(self.raw_events_queue.as_str().into(), Default::default())
            .await?;
        channel.close(200, "done".into()).await?;
        Ok(rate)
    }

    async fn publish_window(
        &self,
        connection: &Connection,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
    ) -> anyhow::Result<f64> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let body = vec![b'x'; 1024];
        let options = BasicPublishOptions {
            mandatory,
            ..BasicPublishOptions::default()
        };
        let started = Instant::now();
        let mut in_flight = VecDeque::with_capacity(CONFIRMS_IN_FLIGHT);
        for _ in 0..self.messages {
            if in_flight.len() == CONFIRMS_IN_FLIGHT
                && let Some(oldest) = in_flight.pop_front()
            {
                ensure_stored(oldest).await?;
            }
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?;
            in_flight.push_back(confirm);
        }
        for confirm in in_flight {
            ensure_stored(confirm).await?;
        }
        let rate = per_second(self.messages, started.elapsed());
        channel.close(200, "done".into()).await?;
        Ok(rate)
    }

    /// Consumes what `raw_publish` left, acknowledging each message.
    async fn raw_consume(&self, connection: &Connection) -> anyhow::Result<f64> {
        let channel = connection.create_channel().await?;
        channel.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut deliveries = channel
            .basic_consume(
                self.raw_queue.as_str().into(),
                "bench-raw".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let started = Instant::now();
        for _ in 0..self.messages {
            let delivery = deliveries
                .next()
                .await
                .context("the benchmark queue's consumer was cancelled")??;
            delivery.ack(BasicAckOptions::default()).await?;
        }
        let rate = per_second(self.messages, started.elapsed());
        channel.close(200, "done".into()).await?;
        Ok(rate)
    }

    /// Single-row insert commits from several connections at once.
    async fn pg_commits(&self) -> anyhow::Result<f64> {
        let per_connection = (self.messages / u64::from(PG_CONNECTIONS)).max(1);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..PG_CONNECTIONS {
            let pool = self.pool.clone();
            tasks.spawn(async move {
                let mut connection = pool.acquire().await?;
                for value in 0..per_connection {
                    sqlx::query("INSERT INTO bench_rows (value) VALUES ($1)")
                        .bind(i64::try_from(value).unwrap_or_default())
                        .execute(&mut *connection)
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let rate = per_second(
            per_connection * u64::from(PG_CONNECTIONS),
            started.elapsed(),
        );
        sqlx::query("TRUNCATE bench_rows")
            .execute(&self.pool)
            .await?;
        Ok(rate)
    }

    /// Fills the outbox (untimed), then times one relay publishing all of it.
    pub(super) async fn relay(&self) -> anyhow::Result<f64> {
        sqlx::query("TRUNCATE conveyor.outbox, conveyor.published")
            .execute(&self.pool)
            .await?;
        let padding = "x".repeat(900);
        let outbox = Outbox::new();
        let mut next = 0;
        while next < self.messages {
            let chunk: Vec<_> = (next..(next + 1000).min(self.messages))
                .map(|n| {
                    // A subject per event of a thousand: the consumer takes a lock per key,
                    // as every service does.
                    Envelope::new(
                        BENCH_SERVICE,
                        BENCH_EVENT,
                        serde_json::json!({ "n": n, "padding": padding }),
                    )
                    .with_subject(format!("key-{}", n % 1000))
                })
                .collect();
            next += chunk.len() as u64;
            let mut tx = self.pool.begin().await?;
            outbox.add_all(&mut tx, &chunk).await?;
            tx.commit().await?;
        }
        let (trigger, shutdown) = Shutdown::new();
        let started = Instant::now();
        let relay = tokio::spawn(
            OutboxRelay::new(self.pool.clone(), self.amqp.clone(), self.names.clone())
                .run(shutdown),
        );
        loop {
            let unsent: i64 =
                sqlx::query_scalar("SELECT count(*) FROM conveyor.outbox WHERE parked_at IS NULL")
                    .fetch_one(&self.pool)
                    .await?;
            if unsent == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rate = per_second(self.messages, started.elapsed());
        trigger.fire();
        relay.await?;
        Ok(rate)
    }

    /// Handles what `relay` published, with the inbox, until every event is handled.
    async fn consumer(&self) -> anyhow::Result<f64> {
        sqlx::query("TRUNCATE conveyor.inbox")
            .execute(&self.pool)
            .await?;
        let consumer = Consumer::builder(BENCH_SERVICE)
            .names(self.names.clone())
            .options(ConsumerOptions {
                retry_tiers: vec![Duration::from_secs(1)],
                ..ConsumerOptions::default()
            })
            .handler(CountingHandler)
            .build()?;
        let stats = consumer.stats();
        let (trigger, shutdown) = Shutdown::new();
        let started = Instant::now();
        let task = tokio::spawn(consumer.run(self.amqp.clone(), self.pool.clone(), shutdown));
        while stats.handled() + stats.duplicates() < self.messages {
            anyhow::ensure!(
                !task.is_finished(),
                "the consumer stopped before handling every event"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rate = per_second(self.messages, started.elapsed());
        trigger.fire();
        task.await?;
        Ok(rate)
    }

    /// The queues of the benchmark's service topology.
    pub(super) fn queue_names(&self) -> Vec<String> {
        self.topology.queue_names().map(str::to_owned).collect()
    }

    pub(super) async fn remove_queues(&self, connection: &Connection) {
        let Ok(channel) = connection.create_channel().await else {
            return;
        };
        let queues = self
            .topology
            .queue_names()
            .chain([self.raw_queue.as_str(), self.raw_events_queue.as_str()]);
        for queue in queues {
            let _ = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in self.topology.exchange_names() {
            let _ = channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

/// A bench event; its data is ignored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct BenchEvent {}

impl conveyor::Event for BenchEvent {
    const TYPE: &'static str = BENCH_EVENT;
}

/// A handler whose only work is the inbox row the runtime writes for it.
struct CountingHandler;

impl EventHandler for CountingHandler {
    type Event = BenchEvent;

    async fn handle(
        &self,
        _event: Self::Event,
        _ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

async fn ensure_stored(confirm: lapin::PublisherConfirm) -> anyhow::Result<()> {
    let confirmation = confirm.await?;
    anyhow::ensure!(
        matches!(confirmation, lapin::Confirmation::Ack(None)),
        "the broker did not store a benchmark message: {confirmation:?}"
    );
    Ok(())
}

pub(super) fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

pub(super) fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn median(runs: &[Figures]) -> Figures {
    let of = |pick: fn(&Figures) -> f64| median_of(runs.iter().map(pick).collect());
    Figures {
        raw_publish: of(|f| f.raw_publish),
        raw_publish_events: of(|f| f.raw_publish_events),
        relay: of(|f| f.relay),
        raw_consume: of(|f| f.raw_consume),
        consumer: of(|f| f.consumer),
        pg_commits: of(|f| f.pg_commits),
    }
}

fn report(figures: &Figures, messages: u64, runs: usize, json: bool) {
    let relay_ratio = figures.relay / figures.raw_publish_events;
    let relay_to_fastest = figures.relay / figures.raw_publish;
    let consumer_ratio = figures.consumer / figures.raw_consume;
    if json {
        let report = serde_json::json!({
            "messages": messages, "runs": runs,
            "per_second": {
                "raw_publish": figures.raw_publish.round(),
                "raw_publish_events_exchange": figures.raw_publish_events.round(),
                "outbox_relay": figures.relay.round(),
                "raw_consume": figures.raw_consume.round(), "consumer_with_inbox": figures.consumer.round(),
                "postgres_commits_8_connections": figures.pg_commits.round(),
            },
            "ratios": {
                "relay_to_raw_publish_same_path": relay_ratio,
                "relay_to_raw_publish_default_exchange": relay_to_fastest,
                "consumer_to_raw_consume": consumer_ratio,
            },
        });
        println!("{report}");
        return;
    }
    println!("Runtime benchmark: {messages} messages per figure, median of {runs} runs");
    println!(
        "  raw publish, 1 KiB to a quorum queue, {CONFIRMS_IN_FLIGHT} in flight, default exchange  {:>9.0} msg/s",
        figures.raw_publish
    );
    println!(
        "  raw publish, the same through conveyor.events (topic, mandatory)  {:>9.0} msg/s",
        figures.raw_publish_events
    );
    println!(
        "  outbox relay (target >= 10,000/s)                                 {:>9.0} ev/s   {relay_ratio:.2} x raw publish on its path, {relay_to_fastest:.2} x through the default exchange",
        figures.relay
    );
    println!(
        "  raw consume, ack each                                             {:>9.0} msg/s",
        figures.raw_consume
    );
    println!(
        "  consumer with inbox, a lock per key (target >= 3,000/s)           {:>9.0} ev/s   {consumer_ratio:.2} x raw consume",
        figures.consumer
    );
    println!(
        "  postgres single-row commits, {PG_CONNECTIONS} connections                         {:>9.0} /s",
        figures.pg_commits
    );
}
