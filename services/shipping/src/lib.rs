//! The shipping service: on `payment.captured` it schedules a shipment to the user's address
//! from its cached copy of users (`shipment.scheduled`), or fails when the country is not
//! served (`shipment.failed`); on `order.cancelled` it cancels a scheduled shipment
//! (`shipment.cancelled`). For the return flow it books the carrier's pickup of a return's
//! parcel (`pickup.booked` or `pickup.failed`), has it collected (`return.received`) and
//! cancels it for cancelled returns (`pickup.cancelled`).
//!
//! # Layout
//!
//! - `http`: `GET /shipments?order_id=…` and `GET /cache/users/{id}`.
//! - `route_table`: each route's method, path, who may call it and whether the gateway
//!   publishes it: the table the router, the gateway and the OpenAPI document follow.
//! - `schedule`: scheduling a paid order's shipment, or failing it where the country is not
//!   served.
//! - `cancel`: cancelling a cancelled order's shipment.
//! - `pickup`: a return's pickup: booked, collected, or cancelled with its return.
//! - `users_cache`: the cached copy of users' addresses, guarded by version.

mod cancel;
mod http;
mod pickup;
mod route_table;
mod schedule;
mod users_cache;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use conveyor::{Consumer, Names};
use platform::{ConfigError, Service, ServiceConfig, ServiceParts};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "shipping";
/// Everything the system knows of this service: whatever lists services reads it.
pub static DECLARATION: platform::Declaration = platform::Declaration {
    name: SERVICE,
    default_port: 8085,
    summary: "schedules a shipment to the user's cached address once an order is paid (shipment.scheduled, or shipment.failed where the country is not served) and cancels it for cancelled orders; books, collects and cancels returns' pickups.",
    settings: &[
        platform::Setting {
            variable: "SHIPPING_COUNTRIES",
            meaning: "comma-separated ISO codes of the countries served [default: EU countries, GB, NO, CH, US, CA]",
        },
        platform::Setting {
            variable: "PICKUP_COLLECTED_AFTER",
            meaning: "how long after a return's pickup is booked the carrier collects it (return.received), like 2s or 30s: the reference system's stand-in for a carrier; keep it well below orders' RETURN_TIMEOUT, or every return is cancelled at its deadline [default: 2s]",
        },
    ],
    emits: &[
        "shipment.scheduled",
        "shipment.failed",
        "shipment.cancelled",
        "pickup.booked",
        "pickup.failed",
        "pickup.cancelled",
        "return.received",
    ],
    routes: ROUTES,
    migrator: &MIGRATOR,
    cache_sources: &[platform::CacheSource {
        service: "users",
        republish: "/users/republish",
    }],
    consumer: Some(|names| consumer(names, &Settings::default())),
    openapi,
    build: |config| Box::pin(build(config)),
};
/// Countries served when `SHIPPING_COUNTRIES` is not set.
pub const DEFAULT_COUNTRIES: &str = "AT,BE,CH,DE,DK,ES,FI,FR,GB,IE,IT,LU,NL,NO,PL,PT,SE,US,CA";

/// Every HTTP route of this service, who may call it and whether the gateway publishes it;
/// the router is built from it. Kept in `platform`, where the gateway reads it too.
pub use route_table::ROUTES;

/// This service's tables, as it creates them at start (tests migrate their own databases).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Shipping's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// ISO 3166-1 alpha-2 codes of the countries shipments go to.
    pub countries: BTreeSet<String>,
    /// How long after booking a pickup the carrier collects the parcel.
    pub collect_after: Duration,
}

/// `PICKUP_COLLECTED_AFTER` when unset.
const DEFAULT_COLLECT_AFTER: Duration = Duration::from_secs(2);

impl Settings {
    /// `SHIPPING_COUNTRIES`: comma-separated ISO codes; `PICKUP_COLLECTED_AFTER`: a
    /// duration.
    ///
    /// # Errors
    /// [`ConfigError`] when an entry is not a two-letter upper-case code.
    pub fn from_env() -> Result<Self, ConfigError> {
        let text =
            std::env::var("SHIPPING_COUNTRIES").unwrap_or_else(|_| DEFAULT_COUNTRIES.to_owned());
        let countries = Self::parse(&text).ok_or_else(|| {
            ConfigError::new(
                "SHIPPING_COUNTRIES",
                &text,
                "comma-separated ISO 3166-1 alpha-2 codes, like FR,DE,IE",
            )
        })?;
        let collect_after =
            platform::duration_setting("PICKUP_COLLECTED_AFTER", DEFAULT_COLLECT_AFTER)?;
        Ok(Self {
            countries,
            collect_after,
        })
    }

    fn parse(text: &str) -> Option<BTreeSet<String>> {
        text.split(',')
            .map(str::trim)
            .filter(|code| !code.is_empty())
            .map(|code| {
                (code.len() == 2 && code.chars().all(|c| c.is_ascii_uppercase()))
                    .then(|| code.to_owned())
            })
            .collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            countries: Self::parse(DEFAULT_COUNTRIES).unwrap_or_default(),
            collect_after: DEFAULT_COLLECT_AFTER,
        }
    }
}

/// The consumer, also used to declare and export this service's topology.
///
/// # Errors
/// When the contract's schemas do not compile.
pub fn consumer(names: &Names, settings: &Settings) -> anyhow::Result<Consumer> {
    Ok(Consumer::builder(SERVICE)
        .names(names.clone())
        .contract(events_schema::EventContract::shared()?)
        .handler(users_cache::Registered)
        .handler(users_cache::Updated)
        .handler(users_cache::Deactivated)
        .handler(schedule::Schedule {
            countries: Arc::new(settings.countries.clone()),
        })
        .handler(flows::UndoOnFailure(cancel::Cancel))
        .handler(pickup::Book {
            countries: Arc::new(settings.countries.clone()),
        })
        .handler(pickup::Collect {
            collect_after: settings.collect_after,
        })
        .handler(flows::UndoOnFailure(pickup::CancelPickup))
        .build()?)
}

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {
    let settings = config.own_settings.or_read(Settings::from_env)?;
    let consumer = consumer(&config.names, &settings)?;
    Service::build(config, &MIGRATOR, |pool| {
        let state = Arc::new(http::AppState { pool: pool.clone() });
        let (router, public) = http::routes(state).finish()?;
        Ok(ServiceParts {
            router,
            public,
            verifier: None,
            consumer: Some(consumer),
            background: Vec::new(),
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
    }
}
