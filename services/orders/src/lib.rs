//! The orders service: places orders checked against its cached copies of users and
//! products (`order.created`), follows the saga's answers to `confirmed` (on
//! `shipment.scheduled`) or `cancelled` with the reason (on `inventory.rejected`,
//! `payment.declined`, `shipment.failed`, a customer's cancel, or the saga deadline), and
//! announces the end (`order.confirmed`, `order.cancelled`).
//!
//! # Layout
//!
//! - `http`: the order API and the cached copies' lookups.
//! - `route_table`: each route's method, path, who may call it and whether the gateway
//!   publishes it: the table the router, the gateway and the OpenAPI document follow.
//! - `order`: the order row and the two ways it ends.
//! - `confirm`: confirming an order on `shipment.scheduled`.
//! - `cancel`: cancelling an order with its reason on a step's refusal
//!   (`inventory.rejected`, `payment.declined`, `shipment.failed`) or its deadline
//!   (`order.deadline-passed`).
//! - `users_cache`: the cached copy of users, guarded by version.
//! - `products_cache`: the cached copy of products, guarded by version.
//! - `returns`: returns of confirmed orders' lines, as runs of the return flow.
//! - `deadline`: each order's deadline as a scheduled event, and the adopter that schedules
//!   one for orders the previous release placed.

mod basket;
mod cancel;
mod confirm;
mod deadline;
mod http;
mod order;
mod products_cache;
mod returns;
mod route_table;
mod users_cache;

use std::sync::Arc;
use std::time::Duration;

use conveyor::{Consumer, Names, Outbox};
use platform::{ConfigError, Service, ServiceConfig, ServiceParts};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "orders";
/// Everything the system knows of this service: whatever lists services reads it.
pub static DECLARATION: platform::Declaration = platform::Declaration {
    name: SERVICE,
    default_port: 8082,
    summary: "places orders against its cached copies of users and products, follows each order's saga to confirmed or cancelled, and cancels orders past the saga deadline.",
    settings: &[
        platform::Setting {
            variable: "ORDER_SAGA_TIMEOUT",
            meaning: "a pending order older than this is cancelled as deadline-passed, like 30s, 1500ms or 2m [default: 2m]; time while the broker or every orders instance is down does not count",
        },
        platform::Setting {
            variable: "RETURN_TIMEOUT",
            meaning: "a pending return older than this is cancelled as deadline-passed [default: 10m]; time while the broker or every orders instance is down does not count; keep it well above the carrier's collection (shipping's PICKUP_COLLECTED_AFTER)",
        },
        platform::Setting {
            variable: "RETURN_WINDOW",
            meaning: "how long after its confirmation an order's lines may be returned, like 43200m or 600s [default: 43200m, 30 days]",
        },
    ],
    emits: &[
        "order.created",
        "order.confirmed",
        "order.cancelled",
        "order.deadline-passed",
        "return.requested",
        "return.closed",
        "return.cancelled",
        "return.deadline-passed",
    ],
    routes: ROUTES,
    migrator: &MIGRATOR,
    cache_sources: &[
        platform::CacheSource {
            service: "users",
            republish: "/users/republish",
        },
        platform::CacheSource {
            service: "inventory",
            republish: "/products/republish",
        },
    ],
    consumer: Some(consumer),
    openapi,
    build: |config| Box::pin(build(config)),
};

/// Every HTTP route of this service, who may call it and whether the gateway publishes it;
/// the router is built from it. Kept in `platform`, where the gateway reads it too.
pub use route_table::ROUTES;

/// The return flow, which orders keeps: lines of a confirmed order sent back.
pub use returns::RETURN_FLOW;

/// This service's tables, as it creates them at start (tests migrate their own databases).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Orders' own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A pending order older than this is cancelled with `deadline-passed`.
    pub saga_timeout: Duration,
    /// A pending return older than this is cancelled with `deadline-passed`.
    pub return_timeout: Duration,
    /// How long after its confirmation an order's lines may be returned.
    pub return_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Well above the retry tiers (1 + 10 + 60 s), so that a retried step still
            // completes the order instead of racing its cancellation.
            saga_timeout: Duration::from_secs(120),
            // The same margin over the tiers, plus the carrier's pickup.
            return_timeout: Duration::from_secs(600),
            return_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl Settings {
    /// `ORDER_SAGA_TIMEOUT`, `RETURN_TIMEOUT`, `RETURN_WINDOW`: `30s`, `1500ms`, `2m`, or a
    /// number of seconds.
    ///
    /// # Errors
    /// [`ConfigError`] when one does not parse or is zero.
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = Self::default();
        Ok(Self {
            saga_timeout: platform::duration_setting("ORDER_SAGA_TIMEOUT", default.saga_timeout)?,
            return_timeout: platform::duration_setting("RETURN_TIMEOUT", default.return_timeout)?,
            return_window: platform::duration_setting("RETURN_WINDOW", default.return_window)?,
        })
    }
}

/// The consumer, also used to declare and export this service's topology.
///
/// # Errors
/// When the contract's schemas do not compile.
pub fn consumer(names: &Names) -> anyhow::Result<Consumer> {
    Ok(Consumer::builder(SERVICE)
        .names(names.clone())
        .contract(events_schema::EventContract::shared()?)
        .handler(users_cache::Registered)
        .handler(users_cache::Updated)
        .handler(users_cache::Deactivated)
        .handler(products_cache::Created)
        .handler(products_cache::Updated)
        .handler(cancel::InventoryRejected)
        .handler(cancel::PaymentDeclined)
        .handler(cancel::ShipmentFailed)
        .handler(cancel::DeadlinePassed)
        .handler(confirm::ShipmentScheduled)
        .handler(returns::handlers::Received)
        .handler(returns::handlers::PickupFailed)
        .handler(returns::handlers::DeadlinePassed)
        .build()?)
}

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {
    let settings = config.own_settings.or_read(Settings::from_env)?;
    let contract = events_schema::EventContract::shared()?;
    let consumer = consumer(&config.names)?;
    Service::build(config, &MIGRATOR, |pool| {
        let outbox = Outbox::new().with_contract(contract);
        let state = Arc::new(http::AppState {
            pool: pool.clone(),
            outbox: outbox.clone(),
            saga_timeout: settings.saga_timeout,
            return_timeout: settings.return_timeout,
            return_window: settings.return_window,
        });
        let adopter = deadline::Adopter {
            pool: pool.clone(),
            outbox,
            saga_timeout: settings.saga_timeout,
        };
        let in_flight = flows::metrics::InFlight {
            flows: vec![&order_saga::ORDER_FLOW, &RETURN_FLOW],
            pool: pool.clone(),
        };
        let (router, public) = http::routes(state).finish()?;
        Ok(ServiceParts {
            router,
            public,
            verifier: None,
            consumer: Some(consumer),
            background: vec![
                Box::new(move |shutdown| Box::pin(adopter.run(shutdown))),
                Box::new(move |shutdown| Box::pin(in_flight.run(shutdown))),
            ],
            openapi: openapi()?,
        })
    })
    .await
}

/// This service's OpenAPI document, served at `GET /openapi.json`: every row of [`ROUTES`],
/// described next to its handler.
///
/// # Errors
/// When a row is not described, or a description has no row.
pub fn openapi() -> Result<serde_json::Value, platform::routes::TableMismatch> {
    http::api(platform::openapi::Api::new(SERVICE, ROUTES)).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_row_and_nothing_else() {
        let document = openapi().unwrap();
        platform::openapi::assert_describes(&document, ROUTES);
        let list = &document["paths"]["/orders"]["get"]["parameters"];
        let limit = list
            .as_array()
            .and_then(|parameters| parameters.iter().find(|p| p["name"] == "limit"))
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], 1000, "{limit}");
        assert_eq!(limit["schema"]["type"], "integer", "{limit}");
    }
}
