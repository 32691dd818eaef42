//! `conveyor bench schedule`: how late scheduled events reach their consumer, and what a
//! large schedule of events not yet due costs the relay, measured on this machine.

use std::time::{Duration, Instant};

use conveyor::{
    Consumer, ConsumerOptions, Envelope, EventHandler, HandlerContext, HandlerError, Outbox,
    OutboxRelay, Shutdown,
};
use indicatif::{ProgressBar, ProgressStyle};
use lapin::Connection;
use lapin::options::QueuePurgeOptions;

use super::bench::{BENCH_EVENT, BENCH_SERVICE, Bench, median_of};

/// What the benchmark schedules and measures.
pub(crate) struct ScheduleLoad {
    /// Events scheduled for the lateness figure.
    pub(crate) events: u64,
    /// Seconds over which their due times are spread.
    pub(crate) over: u64,
    /// Rows not yet due during the relay's loaded rounds.
    pub(crate) later: u64,
    /// Events the relay sends per round.
    pub(crate) messages: u64,
    /// Rounds of each kind, interleaved.
    pub(crate) rounds: usize,
}

/// Lateness at the consumer (its database clock minus the due time), in seconds.
#[derive(Debug, serde::Serialize)]
struct Lateness {
    p50: f64,
    p99: f64,
    max: f64,
    /// Events that arrived before they were due (there must be none).
    early: i64,
}

/// The relay's throughput with an empty schedule and with `later` rows not yet due.
#[derive(Debug, serde::Serialize)]
struct RelayCost {
    empty_schedule: Vec<f64>,
    large_schedule: Vec<f64>,
}

pub(crate) async fn run(load: ScheduleLoad, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        load.events > 0 && load.messages > 0 && load.rounds > 0 && load.over > 0,
        "--events, --over, --messages and --rounds must be at least 1"
    );
    let (bench, connection) = Bench::open(load.messages).await?;
    let outcome = async {
        let lateness = lateness(&bench, &load).await?;
        let cost = relay_cost(&bench, &connection, &load).await?;
        anyhow::Ok((lateness, cost))
    }
    .await;
    bench.remove_queues(&connection).await;
    let (lateness, cost) = outcome?;
    report(&load, &lateness, &cost, json);
    Ok(())
}

fn progress_bar(length: u64) -> ProgressBar {
    ProgressBar::new(length).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// Schedules `events` due evenly over `over` seconds, starting once they are all written,
/// and records each one's lateness as its consumer handles it.
async fn lateness(bench: &Bench, load: &ScheduleLoad) -> anyhow::Result<Lateness> {
    let pool = &bench.pool;
    sqlx::query("TRUNCATE conveyor.scheduled, conveyor.outbox, conveyor.published, conveyor.inbox")
        .execute(pool)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_lateness (n BIGINT NOT NULL, late FLOAT8 NOT NULL)",
    )
    .execute(pool)
    .await?;
    sqlx::query("TRUNCATE bench_lateness").execute(pool).await?;
    // Writing takes about a second per 5,000 events here, with the relay running beside it:
    // the first is due well after that, so that none is overdue when written.
    let lead = Duration::from_secs((load.events / 2000).max(20));
    let first_due: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT clock_timestamp() + make_interval(secs => $1)")
            .bind(lead.as_secs_f64())
            .fetch_one(pool)
            .await?;
    // The relay and the consumer run while the schedule is written, as in a service.
    let (stop, shutdown) = Shutdown::new();
    let relay = tokio::spawn(
        OutboxRelay::new(pool.clone(), bench.amqp.clone(), bench.names.clone())
            .run(shutdown.clone()),
    );
    let consumer = Consumer::builder(BENCH_SERVICE)
        .names(bench.names.clone())
        .options(ConsumerOptions {
            retry_tiers: vec![Duration::from_secs(1)],
            ..ConsumerOptions::default()
        })
        .handler(RecordLateness)
        .build()?;
    let consumer = tokio::spawn(consumer.run(bench.amqp.clone(), pool.clone(), shutdown));
    let spacing = Duration::from_secs(load.over).as_secs_f64() / load.events as f64;
    let progress = progress_bar(load.events).with_message("scheduling");
    let outbox = Outbox::new();
    for chunk in (0..load.events).collect::<Vec<_>>().chunks(1000) {
        let mut tx = pool.begin().await?;
        for &n in chunk {
            let due = first_due
                + chrono::Duration::from_std(Duration::from_secs_f64(spacing * n as f64))?;
            let event = Envelope::new(
                BENCH_SERVICE,
                BENCH_EVENT,
                serde_json::json!({ "n": n, "due": due }),
            )
            .with_subject(format!("key-{}", n % 1000));
            outbox.add_at(&mut tx, &event, due).await?;
        }
        tx.commit().await?;
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();

    let arrived = wait_for_arrivals(bench, load, lead).await;
    stop.fire();
    relay.await?;
    consumer.await?;
    arrived?;
    let (p50, p99, max, early) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY late),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY late),
                max(late), count(*) FILTER (WHERE late < 0)
         FROM bench_lateness",
    )
    .fetch_one(pool)
    .await?;
    Ok(Lateness {
        p50,
        p99,
        max,
        early,
    })
}

async fn wait_for_arrivals(
    bench: &Bench,
    load: &ScheduleLoad,
    lead: Duration,
) -> anyhow::Result<()> {
    let progress = progress_bar(load.events).with_message("arrived");
    let deadline = Instant::now() + lead + Duration::from_secs(load.over + 120);
    loop {
        let arrived: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_lateness")
            .fetch_one(&bench.pool)
            .await?;
        progress.set_position(u64::try_from(arrived).unwrap_or_default());
        if arrived >= i64::try_from(load.events)? {
            progress.finish_and_clear();
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {arrived} of {} scheduled events arrived within two minutes of the last one's due time",
            load.events
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The relay's throughput, rounds with an empty schedule interleaved with rounds with
/// `later` rows due a day from now (written and analysed before each, untimed).
async fn relay_cost(
    bench: &Bench,
    connection: &Connection,
    load: &ScheduleLoad,
) -> anyhow::Result<RelayCost> {
    let progress = progress_bar(2 * load.rounds as u64);
    let mut cost = RelayCost {
        empty_schedule: Vec::new(),
        large_schedule: Vec::new(),
    };
    for round in 0..load.rounds {
        // ABBA: neither kind always runs first.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for large in order {
            progress.set_message(if large {
                "relay, large schedule"
            } else {
                "relay, empty schedule"
            });
            fill_schedule(bench, if large { load.later } else { 0 }).await?;
            let rate = bench.relay().await?;
            purge_queues(bench, connection).await?;
            if large {
                cost.large_schedule.push(rate);
            } else {
                cost.empty_schedule.push(rate);
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    sqlx::query("TRUNCATE conveyor.scheduled")
        .execute(&bench.pool)
        .await?;
    Ok(cost)
}

async fn fill_schedule(bench: &Bench, rows: u64) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE conveyor.scheduled")
        .execute(&bench.pool)
        .await?;
    sqlx::query(
        "INSERT INTO conveyor.scheduled
             (event_id, event_type, subject, payload, due_at, counts_watched_time_only)
         SELECT gen_random_uuid(), 'bench.later', 'later-' || n, convert_to(repeat('x', 200), 'UTF8'),
                clock_timestamp() + interval '1 day' + n * interval '1 ms', true
         FROM generate_series(1, $1) AS n",
    )
    .bind(i64::try_from(rows)?)
    .execute(&bench.pool)
    .await?;
    sqlx::query("VACUUM ANALYZE conveyor.scheduled")
        .execute(&bench.pool)
        .await?;
    // The fill's writes flushed before the timed round, not during it (a benchmark's
    // database may not allow it; the figures are then noisier).
    let _ = sqlx::query("CHECKPOINT").execute(&bench.pool).await;
    Ok(())
}

/// Empties the benchmark's queues between rounds: each round's relay meets the same broker.
async fn purge_queues(bench: &Bench, connection: &Connection) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    for queue in bench.queue_names() {
        channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await?;
    }
    let _ = channel.close(200, "purged".into()).await;
    Ok(())
}

/// A scheduled bench event: its number and when it was due.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct TimedEvent {
    n: i64,
    due: chrono::DateTime<chrono::Utc>,
}

impl conveyor::Event for TimedEvent {
    const TYPE: &'static str = BENCH_EVENT;
}

/// Records how late each event arrived, on the database's clock, in the handler's
/// transaction.
struct RecordLateness;

impl EventHandler for RecordLateness {
    type Event = TimedEvent;

    async fn handle(
        &self,
        event: Self::Event,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO bench_lateness (n, late)
             VALUES ($1, extract(epoch FROM clock_timestamp() - $2)::float8)",
        )
        .bind(event.n)
        .bind(event.due)
        .execute(ctx.tx())
        .await?;
        Ok(())
    }
}

fn report(load: &ScheduleLoad, lateness: &Lateness, cost: &RelayCost, json: bool) {
    let empty = median_of(cost.empty_schedule.clone());
    let large = median_of(cost.large_schedule.clone());
    let pairs: Vec<f64> = cost
        .large_schedule
        .iter()
        .zip(&cost.empty_schedule)
        .map(|(large, empty)| large / empty)
        .collect();
    if json {
        let report = serde_json::json!({
            "scheduled": load.events, "over_seconds": load.over,
            "lateness_seconds": lateness,
            "relay": {
                "messages": load.messages, "rounds": load.rounds, "rows_not_yet_due": load.later,
                "per_second": cost, "median_empty": empty.round(), "median_large": large.round(),
                "ratio_of_medians": large / empty, "ratio_per_pair": pairs,
            },
        });
        println!("{report}");
        return;
    }
    println!(
        "Scheduled delivery: {} events due over {} s, lateness at the consumer (database clock)",
        load.events, load.over
    );
    println!(
        "  p50 {:.3} s   p99 {:.3} s (target < 1 s)   max {:.3} s   arrived early: {}",
        lateness.p50, lateness.p99, lateness.max, lateness.early
    );
    println!(
        "Relay, {} events per round, {} rounds each, interleaved",
        load.messages, load.rounds
    );
    println!("  empty schedule                           {empty:>9.0} ev/s (median)");
    println!(
        "  {:>9} rows not yet due                {large:>9.0} ev/s (median)   {:.3} x empty (target >= 0.97)",
        load.later,
        large / empty
    );
    let pairs: Vec<String> = pairs.iter().map(|ratio| format!("{ratio:.3}")).collect();
    println!("  ratio per pair: {}", pairs.join(", "));
}
