//! The system's services: one line each in [`SERVICES`]. Everything else known of a service
//! (its port, events, consumer, routes, cached copies, how to build it) is its
//! [`Declaration`], in its own crate.

use platform::{CacheSource, Declaration};

/// Every service, in start order: users first (the others check tokens against the keys it
/// publishes), then the sources of cached copies before the services that keep them. A new
/// service is its crate, its dependency in this crate's Cargo.toml, and a line here.
pub(crate) static SERVICES: &[&Declaration] = &[
    &users_service::DECLARATION,
    &inventory_service::DECLARATION,
    &orders_service::DECLARATION,
    &payments_service::DECLARATION,
    &shipping_service::DECLARATION,
];

/// A service of the system: one of [`SERVICES`], by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceName(&'static str);

impl ServiceName {
    // The reference services by name, for the order saga's tooling and the tests.
    pub const USERS: Self = Self(users_service::SERVICE);
    pub const INVENTORY: Self = Self(inventory_service::SERVICE);
    pub const ORDERS: Self = Self(orders_service::SERVICE);
    pub const PAYMENTS: Self = Self(payments_service::SERVICE);
    pub const SHIPPING: Self = Self(shipping_service::SERVICE);

    /// Every service, in start order.
    pub fn all() -> impl Iterator<Item = Self> {
        SERVICES.iter().map(|declaration| Self(declaration.name))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// # Errors
    /// A message naming every service when `name` is none of them.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Self::all()
            .find(|service| service.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Self::all().map(Self::as_str).collect();
                anyhow::anyhow!("unknown service {name:?}: choose from {}", names.join(", "))
            })
    }

    /// Its declaration.
    pub fn declaration(self) -> &'static Declaration {
        SERVICES[self.position()]
    }

    /// Where it stands in [`SERVICES`]; every `ServiceName` is one of them.
    fn position(self) -> usize {
        SERVICES
            .iter()
            .position(|declaration| declaration.name == self.0)
            .expect("a ServiceName is made only from SERVICES")
    }

    pub fn default_port(self) -> u16 {
        self.declaration().default_port
    }

    /// The event types it emits.
    pub fn emits(self) -> &'static [&'static str] {
        self.declaration().emits
    }

    /// Its consumer, which also says what it receives; `None` for a service that only
    /// produces.
    ///
    /// # Errors
    /// When the event contract does not compile.
    pub fn consumer(self, names: &conveyor::Names) -> anyhow::Result<Option<conveyor::Consumer>> {
        self.declaration().consumer(names)
    }

    /// The services whose data it keeps cached copies of, each with the call that makes
    /// that source publish its current state again.
    ///
    /// # Errors
    /// When a source is not a service of the system.
    pub fn cache_sources(self) -> anyhow::Result<Vec<(Self, &'static str)>> {
        self.declaration()
            .cache_sources
            .iter()
            .map(|CacheSource { service, republish }| Ok((Self::parse(service)?, *republish)))
            .collect()
    }

    /// The services that keep a cached copy of this one's data.
    pub fn copied_by(self) -> impl Iterator<Item = Self> {
        Self::all().filter(move |keeper| {
            keeper
                .declaration()
                .cache_sources
                .iter()
                .any(|source| source.service == self.0)
        })
    }

    /// Whether it has a consumer (a queue, a dead-letter queue, retry tiers).
    pub fn consumes(self) -> bool {
        self.declaration().consumer.is_some()
    }

    /// Its OpenAPI document, as it serves it at `GET /openapi.json`: made from its route
    /// table and the types its handlers read and write, so nothing needs to run.
    ///
    /// # Errors
    /// When a row of its table is not described, or a description has no row.
    pub fn openapi(self) -> anyhow::Result<serde_json::Value> {
        Ok((self.declaration().openapi)()?)
    }
}

/// In start order, so tables and maps list services as [`SERVICES`] does.
impl Ord for ServiceName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.position().cmp(&other.position())
    }
}

impl PartialOrd for ServiceName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for ServiceName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so tables can align it with `{:<9}`.
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_listed_once_and_parses_back() {
        let names: Vec<_> = ServiceName::all().map(ServiceName::as_str).collect();
        assert_eq!(
            names,
            ["users", "inventory", "orders", "payments", "shipping"]
        );
        for service in ServiceName::all() {
            assert_eq!(ServiceName::parse(service.as_str()).unwrap(), service);
        }
        let error = ServiceName::parse("billing").unwrap_err().to_string();
        assert!(error.contains("choose from users, inventory"), "{error}");
    }

    #[test]
    fn every_cache_source_is_a_service_started_before_the_copy() {
        for service in ServiceName::all() {
            for (source, republish) in service.cache_sources().unwrap() {
                assert!(
                    source < service,
                    "{service} keeps a copy of {source}'s data, so {source} must come before it in SERVICES"
                );
                assert!(republish.starts_with('/'), "{republish}");
            }
        }
    }

    #[test]
    fn the_copies_of_users_and_products_are_where_the_declarations_say() {
        let names = |services: Vec<ServiceName>| -> Vec<&str> {
            services.into_iter().map(ServiceName::as_str).collect()
        };
        let users = ServiceName::USERS.copied_by().collect();
        assert_eq!(names(users), ["orders", "payments", "shipping"]);
        let products = ServiceName::INVENTORY.copied_by().collect();
        assert_eq!(names(products), ["orders"]);
        assert!(!ServiceName::USERS.consumes());
        assert!(ServiceName::SHIPPING.consumes());
    }

    #[test]
    fn names_are_unique_and_ports_too() {
        let mut names = std::collections::BTreeSet::new();
        let mut ports = std::collections::BTreeSet::new();
        for declaration in SERVICES {
            assert!(
                names.insert(declaration.name),
                "{} is in SERVICES twice",
                declaration.name
            );
            assert!(
                ports.insert(declaration.default_port),
                "{}'s default port {} is another service's",
                declaration.name,
                declaration.default_port
            );
        }
    }
}
