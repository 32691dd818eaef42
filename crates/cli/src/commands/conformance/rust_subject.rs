//! The Rust runtime as the subject of `conformance run`: a consumer of `order.confirmed`
//! whose handler does what each event's `conformance` field asks (fail for good, fail the
//! first N attempts, hold its transaction), then records the effect in
//! `conformance_effects`. Everything else (the inbox, tiers, dead letters, checks) is the
//! runtime's own.

use std::time::Duration;

use anyhow::Context as _;
use conveyor::{
    AmqpConfig, Consumer, ConsumerOptions, EventHandler, HandlerContext, HandlerError, Names,
    Shutdown,
};
use serde::{Deserialize, Serialize};

use super::EVENT_TYPE;

/// What the suite asks of one event; absent fields ask nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Instructions {
    permanent: bool,
    transient_failures: u32,
    hold_ms: u64,
}

/// `order.confirmed` as the subject reads it: only the instructions matter here.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Probe {
    #[serde(default)]
    conformance: Instructions,
}

impl conveyor::Event for Probe {
    const TYPE: &'static str = EVENT_TYPE;
    const VERSION: u32 = 2;
}

struct Obey;

impl EventHandler for Obey {
    type Event = Probe;

    async fn handle(&self, probe: Probe, ctx: &mut HandlerContext<'_>) -> Result<(), HandlerError> {
        let asked = probe.conformance;
        let attempt = ctx.event().previous_attempts + 1;
        if asked.permanent {
            return Err(HandlerError::permanent(anyhow::anyhow!(
                "conformance: told to fail for good"
            )));
        }
        if attempt <= asked.transient_failures {
            return Err(HandlerError::transient(anyhow::anyhow!(
                "conformance: told to fail {} times",
                asked.transient_failures
            )));
        }
        if asked.hold_ms > 0 {
            tokio::time::sleep(Duration::from_millis(asked.hold_ms)).await;
        }
        let event_id = ctx.event().id;
        sqlx::query("INSERT INTO conformance_effects (event_id, attempt) VALUES ($1, $2)")
            .bind(event_id)
            .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
            .execute(ctx.tx())
            .await?;
        Ok(())
    }
}

/// Runs until SIGTERM or Ctrl-C.
///
/// # Errors
/// When a variable is missing or wrong, or the database cannot be reached.
pub(crate) async fn run() -> anyhow::Result<()> {
    let variable = |name: &str| {
        std::env::var(name)
            .with_context(|| format!("{name} is not set: `conveyor conformance run` sets it"))
    };
    let service = variable("CONVEYOR_CONFORMANCE_SERVICE")?;
    let retry_tiers = variable("CONVEYOR_CONFORMANCE_RETRY_TIERS_MS")?
        .split(',')
        .map(|millis| millis.trim().parse().map(Duration::from_millis))
        .collect::<Result<Vec<_>, _>>()
        .context("CONVEYOR_CONFORMANCE_RETRY_TIERS_MS: comma-separated milliseconds")?;
    let pool = platform::connect_or_create(&variable("DATABASE_URL")?, 4).await?;
    let consumer = Consumer::builder(service)
        .names(Names::from_env()?)
        .contract(events_schema::EventContract::shared()?)
        .handler(Obey)
        .options(ConsumerOptions {
            retry_tiers,
            ..ConsumerOptions::default()
        })
        .build()?;
    let shutdown = Shutdown::from_future(conveyor::shutdown::signal());
    consumer
        .run(
            AmqpConfig::from_env("conveyor conformance subject"),
            pool,
            shutdown,
        )
        .await;
    Ok(())
}
