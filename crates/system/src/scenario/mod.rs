//! The order scenario: set up users and products that reach every path of the saga, place
//! orders through the HTTP APIs, wait for every order to end, and check DESIGN.md's
//! invariants against the services' own APIs.
//!
//! - `api`: a small client of the services' HTTP APIs.
//! - `setup`: the users and products, and waiting for the cached copies to catch up.
//! - `load`: placing the orders at a rate, with some customer cancels racing the saga, and
//!   some returns once orders are confirmed.
//! - `check`: reading the services' state at the end, and the report.
//! - `invariants`: DESIGN.md's invariants over that state, one function each.
//! - `queues`: counting the broker's queues: dead letters, unrouted events, queued work.
//! - `outcome`: the end each order's path predicts.

mod api;
mod check;
mod invariants;
mod load;
mod outcome;
mod queues;
mod setup;

use std::time::{Duration, Instant};

pub use api::Api;
pub use check::{Report, pending_orders, report, wait_until_returns_settled, wait_until_settled};
pub use invariants::Invariant;
pub use load::{LoadOptions, Path, Placed, Returned, place};
pub use queues::{Strays, dead_letters, strays};
pub use setup::{Fixtures, Tokens};

/// Runs the whole scenario against running services with `api` (signed in as an admin, who
/// creates the users and products and places orders for the customers), on a broker whose
/// queues have DESIGN.md's names; [`run_with_names`] for others.
///
/// `progress` is told how many orders were placed so far.
///
/// # Errors
/// When a service does not answer, or orders do not end within `settle_timeout`.
pub async fn run(
    api: &Api,
    amqp: &conveyor::AmqpConfig,
    options: &LoadOptions,
    settle_timeout: Duration,
    progress: impl Fn(usize) + Send + Sync,
) -> anyhow::Result<Report> {
    let names = conveyor::Names::default();
    run_with_names(api, amqp, &names, options, settle_timeout, progress).await
}

/// As [`run`], counting dead letters, unrouted events and queued work in the queues `names`
/// gives (the services' own names: `SystemConfig::names`).
///
/// # Errors
/// As [`run`].
pub async fn run_with_names(
    api: &Api,
    amqp: &conveyor::AmqpConfig,
    names: &conveyor::Names,
    options: &LoadOptions,
    settle_timeout: Duration,
    progress: impl Fn(usize) + Send + Sync,
) -> anyhow::Result<Report> {
    let before = queues::strays(amqp, names).await?;
    let fixtures = prepare(api).await?;
    let placed = load::place(api, &fixtures, options, progress).await?;
    settle_with_names(api, amqp, names, &fixtures, &placed, settle_timeout, before).await
}

/// Creates this run's users and products, and waits until every cached copy has them.
///
/// # Errors
/// When a service refuses, or a copy is still behind after 30 s.
pub async fn prepare(api: &Api) -> anyhow::Result<Fixtures> {
    let fixtures = setup::create(api).await?;
    setup::wait_for_caches(api, &fixtures, Duration::from_secs(30)).await?;
    Ok(fixtures)
}

/// Waits until no order is pending, then until the flow is quiet: no message waits in any
/// service's queue or retry tier, and what the services say has not changed for a second
/// (so compensations of the last cancellations are in). Returns what they then say, with the
/// dead letters and unrouted messages that arrived since `before`.
///
/// The queues have DESIGN.md's names; [`settle_with_names`] for others.
///
/// # Errors
/// When orders are still pending, or the flow is not quiet, after `within`.
pub async fn settle(
    api: &Api,
    amqp: &conveyor::AmqpConfig,
    fixtures: &Fixtures,
    placed: &[Placed],
    within: Duration,
    before: Strays,
) -> anyhow::Result<Report> {
    let names = conveyor::Names::default();
    settle_with_names(api, amqp, &names, fixtures, placed, within, before).await
}

/// As [`settle`], with the queues `names` gives.
///
/// # Errors
/// As [`settle`].
pub async fn settle_with_names(
    api: &Api,
    amqp: &conveyor::AmqpConfig,
    names: &conveyor::Names,
    fixtures: &Fixtures,
    placed: &[Placed],
    within: Duration,
    before: Strays,
) -> anyhow::Result<Report> {
    let deadline = Instant::now() + within;
    wait_until_settled(api, fixtures, within).await?;
    wait_until_returns_settled(api, placed, within).await?;
    let read = || async {
        let strays = queues::strays(amqp, names).await?.since(before);
        check::report(api, fixtures, placed, strays).await
    };
    let mut last = read().await?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read().await?;
        if now.same_state(&last) && queues::queued(amqp, names).await? == 0 {
            return Ok(now);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the services' state still changes after {within:?}"
        );
        last = now;
    }
}
