//! The one list of the system's services. Every question about a service (its name, port,
//! events, consumer, how to build it) is a `match` on [`ServiceName`], so adding a service
//! is a compile error everywhere it must be handled, never a silent fall-through. How to
//! build one from the system's settings is `ServiceName::build`, in `start`.

use platform::ServiceConfig;

/// A service of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceName {
    Users,
    Inventory,
    Orders,
    Payments,
    Shipping,
}

impl ServiceName {
    /// Every service, in start order (the sources of cached copies first).
    pub fn all() -> impl Iterator<Item = Self> {
        std::iter::successors(Some(Self::Users), |service| service.next())
    }

    /// The service started after this one; the exhaustive match keeps [`ServiceName::all`]
    /// complete.
    fn next(self) -> Option<Self> {
        match self {
            Self::Users => Some(Self::Inventory),
            Self::Inventory => Some(Self::Orders),
            Self::Orders => Some(Self::Payments),
            Self::Payments => Some(Self::Shipping),
            Self::Shipping => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => users_service::SERVICE,
            Self::Inventory => inventory_service::SERVICE,
            Self::Orders => orders_service::SERVICE,
            Self::Payments => payments_service::SERVICE,
            Self::Shipping => shipping_service::SERVICE,
        }
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

    pub fn default_port(self) -> u16 {
        match self {
            Self::Users => users_service::DEFAULT_PORT,
            Self::Inventory => inventory_service::DEFAULT_PORT,
            Self::Orders => orders_service::DEFAULT_PORT,
            Self::Payments => payments_service::DEFAULT_PORT,
            Self::Shipping => shipping_service::DEFAULT_PORT,
        }
    }

    /// The event types it emits.
    pub fn emits(self) -> &'static [&'static str] {
        match self {
            Self::Users => users_service::EMITS,
            Self::Inventory => inventory_service::EMITS,
            Self::Orders => orders_service::EMITS,
            Self::Payments => payments_service::EMITS,
            Self::Shipping => shipping_service::EMITS,
        }
    }

    /// Its consumer, which also says what it receives; `None` for a service that only
    /// produces.
    ///
    /// # Errors
    /// When the event contract does not compile.
    pub fn consumer(self, config: &ServiceConfig) -> anyhow::Result<Option<conveyor::Consumer>> {
        Ok(match self {
            Self::Users => None,
            Self::Inventory => Some(inventory_service::consumer(&config.names)?),
            Self::Orders => Some(orders_service::consumer(&config.names)?),
            Self::Payments => Some(payments_service::consumer(&config.names)?),
            Self::Shipping => Some(shipping_service::consumer(
                &config.names,
                &shipping_service::Settings::default(),
            )?),
        })
    }

    /// The services whose data it keeps cached copies of, each with the call that makes
    /// that source publish its current state again.
    pub fn cache_sources(self) -> &'static [(Self, &'static str)] {
        const USERS: (ServiceName, &str) = (ServiceName::Users, "/users/republish");
        const PRODUCTS: (ServiceName, &str) = (ServiceName::Inventory, "/products/republish");
        match self {
            Self::Users | Self::Inventory => &[],
            Self::Orders => &[USERS, PRODUCTS],
            Self::Payments | Self::Shipping => &[USERS],
        }
    }

    /// Its OpenAPI document, as it serves it at `GET /openapi.json`: made from its route
    /// table and the types its handlers read and write, so nothing needs to run.
    ///
    /// # Errors
    /// When a row of its table is not described, or a description has no row.
    pub fn openapi(self) -> anyhow::Result<serde_json::Value> {
        Ok(match self {
            Self::Users => users_service::openapi()?,
            Self::Inventory => inventory_service::openapi()?,
            Self::Orders => orders_service::openapi()?,
            Self::Payments => payments_service::openapi()?,
            Self::Shipping => shipping_service::openapi()?,
        })
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
}
