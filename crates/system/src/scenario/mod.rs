//! The order scenario: set up users and products that reach every path of the saga, place
//! orders through the HTTP APIs, wait for every order to end, and check DESIGN.md's
//! invariants against the services' own APIs.
//!
//! - `api`: a small client of the services' HTTP APIs.
//! - `setup`: the users and products, and waiting for the cached copies to catch up.
//! - `load`: placing the orders at a rate, with some customer cancels racing the saga.
//! - `check`: the invariants, and the report.

mod api;
mod check;
mod load;
mod setup;

use std::collections::BTreeMap;
use std::time::Duration;

pub use api::Api;
pub use check::{Invariant, Report};
pub use load::{LoadOptions, Placed};
pub use setup::Fixtures;

/// Runs the whole scenario against running services.
///
/// `progress` is told how many orders were placed so far.
///
/// # Errors
/// When a service does not answer, or orders do not end within `settle_timeout`.
pub async fn run(
    urls: BTreeMap<String, Vec<String>>,
    amqp: &conveyor::AmqpConfig,
    options: &LoadOptions,
    settle_timeout: Duration,
    progress: impl Fn(usize) + Send + Sync,
) -> anyhow::Result<Report> {
    let api = Api::with_replicas(urls)?;
    let dead_letters_before = check::dead_letters(amqp).await?;
    let fixtures = setup::create(&api).await?;
    setup::wait_for_caches(&api, &fixtures, Duration::from_secs(30)).await?;
    let placed = load::place(&api, &fixtures, options, progress).await?;
    check::wait_until_settled(&api, &fixtures, settle_timeout).await?;
    let dead_letters = check::dead_letters(amqp)
        .await?
        .saturating_sub(dead_letters_before);
    check::report(&api, &fixtures, &placed, dead_letters).await
}
