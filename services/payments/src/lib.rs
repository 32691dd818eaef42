//! The payments service: on `inventory.reserved` it charges the order against the user's
//! credit limit from its cached copy of users (`payment.captured` or `payment.declined`);
//! on `order.cancelled` it refunds what it captured (`payment.refunded`); on `return.closed`
//! it refunds the returned lines (`payment.return-refunded`).
//!
//! # Layout
//!
//! - `http`: `GET /payments?order_id=…` and `GET /cache/users/{id}`.
//! - `route_table`: each route's method, path, who may call it and whether the gateway
//!   publishes it: the table the router, the gateway and the OpenAPI document follow.
//! - `charge`: charging an order against the user's credit balance, or declining it.
//! - `refund`: refunding a cancelled order's payment.
//! - `return_refund`: refunding a closed return's lines.
//! - `users_cache`: the cached copy of users, guarded by version.

mod charge;
mod http;
mod refund;
mod return_refund;
mod route_table;
mod users_cache;

use std::sync::Arc;

use conveyor::{Consumer, Names};
use platform::{Service, ServiceConfig, ServiceParts};
use sqlx::migrate::Migrator;

pub const SERVICE: &str = "payments";
/// Everything the system knows of this service: whatever lists services reads it.
pub static DECLARATION: platform::Declaration = platform::Declaration {
    name: SERVICE,
    default_port: 8084,
    summary: "charges orders against the user's credit limit from its cached copy of users (payment.captured or payment.declined), refunds cancelled ones and refunds closed returns (payment.return-refunded).",
    settings: &[],
    emits: &[
        "payment.captured",
        "payment.declined",
        "payment.refunded",
        "payment.return-refunded",
    ],
    routes: ROUTES,
    migrator: &MIGRATOR,
    cache_sources: &[platform::CacheSource {
        service: "users",
        republish: "/users/republish",
    }],
    consumer: Some(consumer),
    openapi,
    build: |config| Box::pin(build(config)),
};

/// Every HTTP route of this service, who may call it and whether the gateway publishes it;
/// the router is built from it. Kept in `platform`, where the gateway reads it too.
pub use route_table::ROUTES;

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
        .handler(users_cache::Registered)
        .handler(users_cache::Updated)
        .handler(users_cache::Deactivated)
        .handler(charge::Charge)
        .handler(flows::UndoOnFailure(refund::Refund))
        .handler(return_refund::RefundReturn)
        .build()?)
}

/// Connects, migrates and binds; the returned service reports its port.
///
/// # Errors
/// When the database, a migration or the port fails.
pub async fn build(config: ServiceConfig) -> anyhow::Result<Service> {
    let consumer = consumer(&config.names)?;
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
