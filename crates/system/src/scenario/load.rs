//! Placing orders: a mix that reaches every path of the saga, at a chosen concurrency and
//! rate, with some customers cancelling right after placing (racing the saga), and some
//! returning a line once their order is confirmed (some cancelling the return at once).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::api::Api;
use super::setup::Fixtures;

/// How many orders, how many in flight, how fast.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub orders: usize,
    pub concurrency: usize,
    /// Orders per second offered; as fast as the concurrency allows when `None`.
    pub rate: Option<f64>,
    /// Every this many orders, one is cancelled by its customer soon after it is placed,
    /// racing the saga; 0 for none.
    pub cancel_every: usize,
    /// How long after placing a customer cancels: spread evenly from at once to this, so
    /// cancels land at every step of the saga, not only before its first.
    pub cancel_within: Duration,
    /// Every this many regular orders, its customer returns a unit of its first line once
    /// it is confirmed, and every third of those cancels the return at once (racing the
    /// return flow); 0 for none.
    pub return_every: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            orders: 200,
            concurrency: 32,
            rate: None,
            cancel_every: 20,
            cancel_within: Duration::ZERO,
            return_every: 10,
        }
    }
}

/// The path an order was made to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Regular,
    LowCredit,
    FarAway,
    Scarce,
    CustomerCancel,
}

/// An order as placed.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order_id: String,
    pub path: Path,
    /// For customer cancels: whether the cancel came before the saga ended.
    pub cancel_accepted: Option<bool>,
    /// The return its customer asked for, if any.
    pub returned: Option<Returned>,
}

/// A return as asked for.
#[derive(Debug, Clone)]
pub struct Returned {
    pub return_id: String,
    /// For returns cancelled at once: whether the cancel came before the return ended.
    pub cancel_accepted: Option<bool>,
}

fn path_of(index: usize, cancel_every: usize) -> Path {
    match index % 20 {
        14 => Path::LowCredit,
        15 => Path::FarAway,
        16 => Path::Scarce,
        _ if cancel_every > 0 && index % cancel_every == cancel_every - 1 => Path::CustomerCancel,
        _ => Path::Regular,
    }
}

/// The customer who places order `index`, and what they order.
fn order_body(fixtures: &Fixtures, index: usize, path: Path) -> (&str, Value) {
    let regular = &fixtures.regular_users[index % fixtures.regular_users.len()];
    let product = &fixtures.products[index % fixtures.products.len()];
    let (user, items) = match path {
        Path::LowCredit => (
            &fixtures.low_credit_user,
            json!([{ "sku": product, "quantity": 3 }]),
        ),
        Path::FarAway => (
            &fixtures.far_away_user,
            json!([{ "sku": product, "quantity": 1 }]),
        ),
        Path::Scarce => (
            regular,
            json!([{ "sku": fixtures.scarce_product, "quantity": 3 }]),
        ),
        Path::Regular | Path::CustomerCancel => {
            let second = &fixtures.products[(index + 1) % fixtures.products.len()];
            (
                regular,
                json!([{ "sku": product, "quantity": 1 + index % 3 }, { "sku": second, "quantity": 1 }]),
            )
        }
    };
    (user, json!({ "user_id": user, "items": items }))
}

async fn place_one(
    api: &Api,
    fixtures: &Fixtures,
    run: &str,
    index: usize,
    options: &LoadOptions,
) -> anyhow::Result<Placing> {
    let path = path_of(index, options.cancel_every);
    let (customer, body) = order_body(fixtures, index, path);
    // Customers place and cancel their own orders, with their own tokens.
    let token = fixtures
        .tokens
        .of(customer)
        .with_context(|| format!("no token for customer {customer}"))?;
    let api = api.with_token(token);
    let key = format!("{run}-{index}");
    let (status, answer) = api
        .call(
            Method::POST,
            "orders",
            "/orders",
            Some(&body),
            &[("Idempotency-Key", &key)],
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "placing order {index} answered {status}: {answer}"
    );
    let order_id = answer["id"].as_str().unwrap_or_default().to_owned();
    let cancel_accepted = if path == Path::CustomerCancel {
        tokio::time::sleep(cancel_delay(index, options.cancel_within)).await;
        let (status, answer) = api
            .call(
                Method::POST,
                "orders",
                &format!("/orders/{order_id}/cancel"),
                None,
                &[],
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "cancelling order {order_id} answered {status}: {answer}"
        );
        Some(status == StatusCode::OK)
    } else {
        None
    };
    // The customer's return waits for the order to end on a task of its own, so polling for
    // it takes none of the load's concurrency from the orders still to place.
    let returning =
        (path == Path::Regular && wants_return(index, options.return_every)).then(|| {
            let cancel = (index / options.return_every) % 3 == 2;
            let (api, order_id) = (api.clone(), order_id.clone());
            Returning(tokio::spawn(async move {
                return_when_confirmed(&api, &order_id, &body, cancel).await
            }))
        });
    Ok(Placing {
        placed: Placed {
            order_id,
            path,
            cancel_accepted,
            returned: None,
        },
        returning,
    })
}

/// An order just placed, and its customer's return on its way, if they make one.
struct Placing {
    placed: Placed,
    returning: Option<Returning>,
}

/// A customer's return on its way, on a task of its own. Dropped unfinished (the load
/// failed, or was given up), the task is stopped: no return is asked for after the load
/// ended.
struct Returning(JoinHandle<anyhow::Result<Option<Returned>>>);

impl Drop for Returning {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Placing {
    /// The order once its customer's return, if any, was asked for.
    async fn returned(self) -> anyhow::Result<Placed> {
        let Some(mut returning) = self.returning else {
            return Ok(self.placed);
        };
        let returned = (&mut returning.0)
            .await
            .context("the task returning a line of an order failed")??;
        Ok(Placed {
            returned,
            ..self.placed
        })
    }
}

fn wants_return(index: usize, every: usize) -> bool {
    every > 0 && index.is_multiple_of(every)
}

/// How long a customer waits for an order to end before giving up on returning it: the
/// order's deadline bounds it, so a longer wait means the system is stuck, which settling
/// reports.
const ORDER_ENDS_WITHIN: Duration = Duration::from_secs(300);

/// Once the order is confirmed, its customer returns a unit of its first line, and cancels
/// the return at once when `cancel`. Nothing for an order that ended otherwise.
async fn return_when_confirmed(
    api: &Api,
    order_id: &str,
    body: &Value,
    cancel: bool,
) -> anyhow::Result<Option<Returned>> {
    let started = Instant::now();
    let status = loop {
        let order = api.get("orders", &format!("/orders/{order_id}")).await?;
        let status = order["status"].as_str().unwrap_or_default().to_owned();
        if status != "pending" || started.elapsed() > ORDER_ENDS_WITHIN {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if status != "confirmed" {
        return Ok(None);
    }
    let sku = &body["items"][0]["sku"];
    let lines = json!({ "lines": [{ "sku": sku, "quantity": 1 }] });
    let path = format!("/orders/{order_id}/returns");
    // The key is the order's own (one return per order here), as a client would send it.
    let (status, answer) = api
        .call(
            Method::POST,
            "orders",
            &path,
            Some(&lines),
            &[("Idempotency-Key", "first-return")],
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "returning a line of order {order_id} answered {status}: {answer}"
    );
    let return_id = answer["id"].as_str().unwrap_or_default().to_owned();
    let cancel_accepted = if cancel {
        let path = format!("/returns/{return_id}/cancel");
        let (status, answer) = api.call(Method::POST, "orders", &path, None, &[]).await?;
        anyhow::ensure!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "cancelling return {return_id} answered {status}: {answer}"
        );
        Some(status == StatusCode::OK)
    } else {
        None
    };
    Ok(Some(Returned {
        return_id,
        cancel_accepted,
    }))
}

/// A delay from zero to `within`, spread evenly over the orders (a fixed stride through
/// 97 steps, so runs repeat and consecutive cancels differ).
fn cancel_delay(index: usize, within: Duration) -> Duration {
    let step = (index * 37) % 97;
    within.mul_f64(step as f64 / 96.0)
}

/// Places `options.orders` orders; calls `progress` with the count placed so far.
///
/// # Errors
/// The first order a service refused, or a service that could not be reached.
pub async fn place(
    api: &Api,
    fixtures: &Fixtures,
    options: &LoadOptions,
    progress: impl Fn(usize) + Send + Sync,
) -> anyhow::Result<Vec<Placed>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let placing = futures_util::stream::iter(0..options.orders)
        .map(|index| {
            let (run, done, progress) = (&run, &done, &progress);
            async move {
                if let Some(rate) = options.rate {
                    let due = started + Duration::from_secs_f64(index as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let placing = place_one(api, fixtures, run, index, options).await?;
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                anyhow::Ok(placing)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let mut placed = Vec::with_capacity(placing.len());
    for order in placing {
        placed.push(order.returned().await?);
    }
    Ok(placed)
}
