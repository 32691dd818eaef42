//! `conveyor demo-ledger`: the runtime alone, end to end on the local broker and database —
//! events committed through the outbox, relayed with confirms, handled once each through the
//! inbox, a flaky one retried, poison ones dead-lettered with the reason — then a summary and
//! the exactly-once check. `--fail-account` makes a failure for the operators' walkthrough.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use conveyor::{
    AmqpConfig, Consumer, ConsumerOptions, Envelope, EventHandler, HandlerContext, HandlerError,
    Names, Outbox, OutboxRelay, Publisher, Shutdown,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

const SERVICE: &str = "demo-ledger";
const EVENT_TYPE: &str = "demo.transfer-recorded";

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Events to publish through the outbox.
    #[arg(long, default_value_t = 1000)]
    events: u64,
    /// Simulate a bad deploy: the ledger refuses every transfer to this account (acct-0 to
    /// acct-36), so they are dead-lettered. Run the demo again without it, after
    /// `conveyor dlq replay demo-ledger`, to see them handled.
    #[arg(long, value_name = "ACCOUNT")]
    fail_account: Option<String>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transfer {
    run: Uuid,
    account: String,
    amount_cents: i64,
    #[serde(default)]
    flaky: bool,
}

impl conveyor::Event for Transfer {
    const TYPE: &'static str = EVENT_TYPE;
}

/// Records each transfer in the demo's ledger table, inside the handling transaction.
struct LedgerHandler {
    failing_account: Option<String>,
}

impl EventHandler for LedgerHandler {
    type Event = Transfer;

    async fn handle(
        &self,
        transfer: Transfer,
        ctx: &mut HandlerContext<'_>,
    ) -> Result<(), HandlerError> {
        if transfer.amount_cents < 0 {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "a transfer of {} cents to {} is negative",
                transfer.amount_cents,
                transfer.account
            )));
        }
        if self.failing_account.as_deref() == Some(transfer.account.as_str()) {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "ledger account {} is frozen by a bad deploy",
                transfer.account
            )));
        }
        if transfer.flaky && ctx.event().previous_attempts == 0 {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "the ledger's bank link timed out"
            )));
        }
        let event_id = ctx.event().id;
        sqlx::query("INSERT INTO demo_ledger (event_id, run, account, amount_cents) VALUES ($1, $2, $3, $4)")
            .bind(event_id)
            .bind(transfer.run)
            .bind(&transfer.account)
            .bind(transfer.amount_cents)
            .execute(ctx.tx())
            .await?;
        Ok(())
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.events > 0, "--events must be at least 1");
    let database_url = std::env::var("DEMO_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/conveyor_demo".to_owned());
    let pool = platform::connect_or_create(&database_url, 10).await?;
    conveyor::install(&pool).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS demo_ledger (event_id UUID PRIMARY KEY, run UUID NOT NULL,
         account TEXT NOT NULL, amount_cents BIGINT NOT NULL,
         handled_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&pool)
    .await?;
    // Databases made by an earlier version of the demo lack the column.
    sqlx::query("ALTER TABLE demo_ledger ADD COLUMN IF NOT EXISTS handled_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()")
        .execute(&pool)
        .await?;
    let amqp = AmqpConfig::from_env("conveyor demo");
    let names = Names::from_env()?;
    let consumer = Consumer::builder(SERVICE)
        .names(names.clone())
        .handler(LedgerHandler {
            failing_account: args.fail_account.clone(),
        })
        .options(ConsumerOptions {
            retry_tiers: vec![Duration::from_millis(500)],
            ..ConsumerOptions::default()
        })
        .build()?;
    let topology = consumer.topology();
    let connection = amqp.connect().await?;
    topology.declare(&connection).await?;
    let stats = consumer.stats();
    let (stop, shutdown) = Shutdown::new();
    let consumer_task = tokio::spawn(consumer.run(amqp.clone(), pool.clone(), shutdown.clone()));
    let relay_task =
        tokio::spawn(OutboxRelay::new(pool.clone(), amqp.clone(), names.clone()).run(shutdown));

    let run = Uuid::now_v7();
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let refused = (0..args.events)
        .filter(|n| args.fail_account.as_deref() == Some(account(*n).as_str()))
        .count() as u64;
    let good = args.events - refused;
    commit_transfers(&pool, run, args.events).await?;
    // Poison: a negative transfer the handler refuses, and bytes that are no event at all.
    let publisher = Publisher::connect(amqp.clone(), names.clone()).await?;
    let negative = Envelope::new(
        SERVICE,
        EVENT_TYPE,
        json!({"run": run, "account": "acct-poison", "amount_cents": -500}),
    );
    publisher.publish(&negative).await?;
    let mut malformed = conveyor::OutgoingMessage::event(&names, &negative, &Default::default());
    malformed.body = b"{\"specversion\": \"1.0\", \"truncated".to_vec();
    malformed.properties = malformed
        .properties
        .with_message_id(Uuid::now_v7().to_string().into());
    publisher.publish_messages(&[malformed]).await?;

    let handled = wait_for_ledger(&pool, run, good).await;
    let elapsed = started.elapsed();
    let dead_letters_wait = Instant::now();
    while stats.dead_lettered() < 2 + refused
        && dead_letters_wait.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.fire();
    relay_task.await?;
    consumer_task.await?;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM demo_ledger WHERE run = $1")
            .bind(run)
            .fetch_one(&pool)
            .await?;
    let handled = handled?;
    let earlier: i64 =
        sqlx::query_scalar("SELECT count(*) FROM demo_ledger WHERE run <> $1 AND handled_at >= $2")
            .bind(run)
            .bind(started_at)
            .fetch_one(&pool)
            .await?;
    let expected = i64::try_from(good).unwrap_or(i64::MAX);
    let once = rows == expected && distinct == expected;
    let summary = json!({
        "run": run,
        "events_committed": args.events,
        "refused_by_the_bad_deploy": refused,
        "handled": handled,
        "earlier_events_handled": earlier,
        "retried": stats.retried(),
        "duplicates_skipped": stats.duplicates(),
        "dead_lettered": stats.dead_lettered(),
        "dead_letter_queue": names.dead_letter_queue(SERVICE),
        "seconds": elapsed.as_secs_f64(),
        "events_per_second": (good as f64 / elapsed.as_secs_f64()).round(),
        "invariants": [{
            "name": "every committed event applied exactly once",
            "ok": once,
            "detail": format!("{rows} ledger rows, {distinct} distinct events, {expected} expected ({refused} refused and dead-lettered)"),
        }],
    });
    if args.json {
        println!("{summary}");
    } else {
        print_summary(&summary);
    }
    anyhow::ensure!(once, "an invariant failed: see the summary above");
    Ok(())
}

async fn commit_transfers(pool: &sqlx::PgPool, run: Uuid, count: u64) -> anyhow::Result<()> {
    let outbox = Outbox::new();
    let mut next = 0;
    while next < count {
        let chunk: Vec<_> = (next..(next + 100).min(count))
            .map(|n| {
                let data = json!({
                    "run": run, "account": account(n),
                    "amount_cents": 100 + n, "flaky": n % 250 == 7,
                });
                Envelope::new(SERVICE, EVENT_TYPE, data).with_subject(account(n))
            })
            .collect();
        next += chunk.len() as u64;
        let mut tx = pool.begin().await?;
        outbox.add_all(&mut tx, &chunk).await?;
        tx.commit().await?;
    }
    Ok(())
}

fn account(n: u64) -> String {
    format!("acct-{}", n % 37)
}

/// Waits, with a progress bar, until the ledger holds every event of this run.
async fn wait_for_ledger(pool: &sqlx::PgPool, run: Uuid, expected: u64) -> anyhow::Result<u64> {
    let progress = ProgressBar::new(expected).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events handled {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let handled: i64 = sqlx::query_scalar("SELECT count(*) FROM demo_ledger WHERE run = $1")
            .bind(run)
            .fetch_one(pool)
            .await
            .context("cannot read the demo ledger")?;
        let handled = u64::try_from(handled).unwrap_or_default();
        progress.set_position(handled);
        if handled >= expected {
            progress.finish_and_clear();
            return Ok(handled);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {handled} of {expected} events were handled within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_summary(summary: &serde_json::Value) {
    println!(
        "Conveyor ledger demo (run {})",
        summary["run"].as_str().unwrap_or_default()
    );
    println!(
        "  events committed through the outbox  {}",
        summary["events_committed"]
    );
    println!(
        "  handled, each exactly once           {}",
        summary["handled"]
    );
    for (key, label) in [
        (
            "refused_by_the_bad_deploy",
            "refused by the bad deploy          ",
        ),
        (
            "earlier_events_handled",
            "earlier events handled (replayed)  ",
        ),
    ] {
        if summary[key] != 0 {
            println!("  {label}  {}", summary[key]);
        }
    }
    println!(
        "  sent to a retry tier, then handled   {}",
        summary["retried"]
    );
    println!(
        "  duplicates skipped by the inbox      {}",
        summary["duplicates_skipped"]
    );
    println!(
        "  dead-lettered with the reason        {}  (in {})",
        summary["dead_lettered"],
        summary["dead_letter_queue"].as_str().unwrap_or_default()
    );
    println!(
        "  first commit to last handled         {:.2} s, {} events/s (includes the 500 ms retry wait)",
        summary["seconds"].as_f64().unwrap_or_default(),
        summary["events_per_second"]
    );
    for invariant in summary["invariants"].as_array().into_iter().flatten() {
        let status = if invariant["ok"] == true {
            "ok"
        } else {
            "FAILED"
        };
        println!(
            "  [{status}] {}: {}",
            invariant["name"].as_str().unwrap_or_default(),
            invariant["detail"].as_str().unwrap_or_default()
        );
    }
}
