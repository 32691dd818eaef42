//! The inventory service: the product catalogue (published as `product.created` and
//! `product.updated` for cached copies), stock, and the saga's reservations — reserve on
//! `order.created` (`inventory.reserved` or `inventory.rejected`), release on
//! `order.cancelled` (`inventory.released`) if it had reserved.
//!
//! # Layout
//!
//! - `http`: the product API.
//! - `reserve`: reserving an order's stock, all or nothing, on `order.created`.
//! - `release`: giving it back on `order.cancelled`.

mod http;
mod release;
mod reserve;

use std::sync::Arc;

use conveyor::{Consumer, Names, Outbox, Shutdown};
use platform::{Service, ServiceConfig, ServiceParts};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "inventory";
/// The event types this service emits (for the AsyncAPI document).
pub const EMITS: &[&str] = &[
    "product.created",
    "product.updated",
    "inventory.reserved",
    "inventory.rejected",
    "inventory.released",
];
pub const DEFAULT_PORT: u16 = 8083;
/// What `inventory-service --help` says.
pub const ABOUT: platform::About = platform::About {
    service: SERVICE,
    default_port: DEFAULT_PORT,
    summary: "keeps the product catalogue and stock, reserves stock for new orders (inventory.reserved or inventory.rejected) and releases it for cancelled ones.",
    settings: &[],
};

/// Every HTTP route of this service, who may call it and whether the gateway publishes it;
/// the router is built from it. Kept in `platform`, where the gateway reads it too.
pub use platform::routes::inventory::ROUTES;

/// This service's tables, as it creates them at start (tests migrate their own databases).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The consumer, also used to declare and export this service's topology.
///
/// # Errors
/// When the contract's schemas do not compile.
pub fn consumer(names: &Names) -> anyhow::Result<Consumer> {
    Ok(Consumer::builder(SERVICE)
        .names(names.clone())
        .contract(events_schema::EventContract::shared()?)
        .handler(reserve::ReserveStock)
        .handler(order_saga::UndoOnCancel(release::ReleaseStock))
        .build()?)
}

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {
    let contract = events_schema::EventContract::shared()?;
    let consumer = consumer(&config.names)?;
    Service::build(config, &MIGRATOR, |pool| {
        let state = Arc::new(http::AppState {
            pool: pool.clone(),
            outbox: Outbox::new().with_contract(contract),
        });
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

/// Runs the service until `shutdown` fires.
///
/// # Errors
/// As [`build`], or when the HTTP server fails.
pub async fn run(config: ServiceConfig, shutdown: Shutdown) -> anyhow::Result<()> {
    build(config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_row_and_nothing_else() {
        let document = openapi().unwrap();
        platform::openapi::assert_describes(&document, ROUTES);
        let create = &document["paths"]["/products"]["post"]["requestBody"]["content"];
        let fields = &create["application/json"]["schema"]["properties"];
        assert_eq!(
            fields["price_cents"]["maximum"], 10_000_000_000_i64,
            "{fields}"
        );
        assert_eq!(fields["sku"]["pattern"], platform::openapi::SKU, "{fields}");
    }
}
