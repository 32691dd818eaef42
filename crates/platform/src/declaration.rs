//! A service declared once. Whatever lists services (the system's roster and `serve all`,
//! the topology, broker users, the AsyncAPI and OpenAPI documents, the deployment files, the
//! binary's `--help`) reads them from their declarations, so a service joins the system by
//! its crate and one line in the roster.

use std::future::Future;
use std::pin::Pin;

use conveyor::{Consumer, Names};
use sqlx::migrate::Migrator;

use crate::config::ServiceConfig;
use crate::routes::{Route, ServiceTable, TableMismatch};
use crate::service::Service;

/// What building a service returns: connected, migrated, bound, not yet running.
pub type Building = Pin<Box<dyn Future<Output = anyhow::Result<Service>> + Send>>;

/// Everything the system needs to know of a service, in one value its crate exports as
/// `pub static DECLARATION`.
pub struct Declaration {
    /// `payments`: names its binary (`payments-service`), its settings (`PAYMENTS_…`), its
    /// database (`conveyor_payments`), queue and broker user.
    pub name: &'static str,
    pub default_port: u16,
    /// One sentence: what the service does (`--help`, the book's reference).
    pub summary: &'static str,
    /// Its own settings, beside the ones every service reads, for `--help`.
    pub settings: &'static [Setting],
    /// The event types it emits; the contract's owners must agree (a test checks).
    pub emits: &'static [&'static str],
    /// Every HTTP route, who may call it and whether the gateway publishes it.
    pub routes: &'static [Route],
    /// Its tables.
    pub migrator: &'static Migrator,
    /// The services whose data it keeps cached copies of.
    pub cache_sources: &'static [CacheSource],
    /// Its consumer as declared, which says what it receives (topology, broker users, the
    /// AsyncAPI document); `None` for a service that only produces.
    pub consumer: Option<fn(&Names) -> anyhow::Result<Consumer>>,
    /// Its OpenAPI document, made from [`Declaration::routes`] and the handlers' types.
    pub openapi: fn() -> Result<serde_json::Value, TableMismatch>,
    /// Connects, migrates and binds one instance. Settings of its own come from
    /// [`ServiceConfig::own_settings`] when given there, else from the environment.
    pub build: fn(ServiceConfig) -> Building,
}

/// A setting a service reads from the environment, for `--help` and the book's reference.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub variable: &'static str,
    pub meaning: &'static str,
}

/// A service whose data another keeps a cached copy of, and the route that makes it publish
/// its current state again (`conveyor cache rebuild`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSource {
    pub service: &'static str,
    pub republish: &'static str,
}

impl Declaration {
    /// `payments-service`.
    pub fn binary(&self) -> String {
        format!("{}-service", self.name)
    }

    /// Its routes, under its name: what the gateway routes by.
    pub fn table(&self) -> ServiceTable {
        ServiceTable {
            service: self.name,
            routes: self.routes,
        }
    }

    /// Its consumer as declared; `None` for a service that only produces.
    ///
    /// # Errors
    /// When the event contract does not compile, or a handler is registered twice.
    pub fn consumer(&self, names: &Names) -> anyhow::Result<Option<Consumer>> {
        self.consumer.map(|consumer| consumer(names)).transpose()
    }
}

impl std::fmt::Debug for Declaration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Declaration")
            .field("name", &self.name)
            .field("default_port", &self.default_port)
            .field("emits", &self.emits)
            .field("cache_sources", &self.cache_sources)
            .finish_non_exhaustive()
    }
}
