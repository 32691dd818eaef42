//! Every service's HTTP routes as data: the method, the path template, who may call it,
//! and whether the gateway publishes it. The services build their routers from these rows,
//! the gateway's allow-list is read from them, and the end-to-end route matrix calls every
//! row as every kind of caller; a route without a row fails the service's build.
//!
//! The tables live here, not in the service crates, because the gateway reads them and no
//! service (the gateway is one) imports another service's crate; each service re-exports its
//! own as `ROUTES`.
//!
//! # Layout
//!
//! - `route`: a row: [`Route`], with its [`Verb`], [`Access`] and [`Exposure`].
//! - `template`: a request's path against a row's template, read as axum reads it.
//! - `lookup`: which service's row a request to the gateway names.
//! - `build`: a service's axum routers made from its table.
//! - `probe`: the check of a service's router against its table, for its unit test.
//! - `users`, `orders`, `inventory`, `payments`, `shipping`: each service's table.
//! - `gateway`: the routes the gateway answers itself.
//! - `operations`: health, readiness and metrics, which every service answers.

mod build;
mod lookup;
mod probe;
mod route;
mod template;

pub mod gateway;
pub mod inventory;
pub mod operations;
pub mod orders;
pub mod payments;
pub mod shipping;
pub mod users;

pub use build::{Routes, StatefulRoutes, TableMismatch};
pub use lookup::{Lookup, lookup};
pub use probe::{assert_serves, probe_pool, unserved};
pub use route::{Access, Exposure, RateClass, Route, Verb};
pub use template::matches;

/// Each service behind the gateway, by name, with its table: the gateway's allow-list.
pub static SERVICES: [(&str, &[Route]); 5] = [
    ("users", users::ROUTES),
    ("orders", orders::ROUTES),
    ("inventory", inventory::ROUTES),
    ("payments", payments::ROUTES),
    ("shipping", shipping::ROUTES),
];

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    fn every_table() -> Vec<(&'static str, &'static [Route])> {
        let mut tables = SERVICES.to_vec();
        tables.push(("gateway", gateway::ROUTES));
        tables.push(("operations", operations::ROUTES));
        tables
    }

    #[test]
    fn no_table_has_a_row_twice_and_every_path_is_a_template_axum_accepts() {
        for (name, table) in every_table() {
            for (index, row) in table.iter().enumerate() {
                assert!(row.path.starts_with('/'), "{name}: {row}");
                assert!(!row.path.ends_with('/'), "{name}: {row}");
                assert!(!row.path.contains(['*', ':']), "{name}: {row}");
                let again = table[index + 1..]
                    .iter()
                    .any(|other| (other.verb, other.path) == (row.verb, row.path));
                assert!(!again, "{name} has {row} twice");
            }
        }
    }

    #[test]
    fn a_published_template_belongs_to_one_service_and_the_gateways_own_to_none() {
        // Internal ones may repeat: orders, payments and shipping each have /cache/users/{id}.
        for (service, route) in lookup::rows().filter(|(_, route)| route.through_gateway()) {
            for (other, other_route) in lookup::rows() {
                let shared =
                    template::example(route.path, "x") == template::example(other_route.path, "x");
                assert!(
                    service == other || !shared,
                    "{service} and {other} share {}",
                    route.path
                );
            }
        }
        for route in gateway::ROUTES {
            let path = template::example(route.path, "x");
            let found = lookup(&route.verb.method(), &path);
            assert_eq!(found, Lookup::NotFound, "{route}");
        }
    }

    #[test]
    fn the_gateway_finds_published_rows_and_nothing_internal() {
        let found = |method: Method, path: &str| match lookup(&method, path) {
            Lookup::Found { service, route } => Some((service, route.path)),
            Lookup::WrongMethod | Lookup::NotFound => None,
        };
        let order = Some(("orders", "/orders/{id}"));
        assert_eq!(found(Method::GET, "/orders/1"), order);
        assert_eq!(found(Method::HEAD, "/orders/1"), order);
        let token = Some(("users", "/auth/token"));
        assert_eq!(found(Method::POST, "/auth/token"), token);
        let shipments = Some(("shipping", "/shipments"));
        assert_eq!(found(Method::GET, "/shipments"), shipments);
        let stock = Some(("inventory", "/products/{sku}/stock"));
        assert_eq!(found(Method::PUT, "/products/A-1/stock"), stock);
        for (method, path) in [
            (Method::GET, "/cache/users/1"),
            (Method::GET, "/reservations/1"),
            (Method::POST, "/users/republish"),
            (Method::GET, "/users/republish"),
            (Method::POST, "/products/republish"),
            (Method::POST, "/auth/keys"),
            (Method::GET, "/.well-known/jwks.json"),
            (Method::GET, "/healthz"),
            (Method::GET, "/orders/"),
            (Method::GET, "/orders/1/refund"),
        ] {
            assert_eq!(lookup(&method, path), Lookup::NotFound, "{method} {path}");
        }
        assert_eq!(lookup(&Method::DELETE, "/orders/1"), Lookup::WrongMethod);
        assert_eq!(lookup(&Method::GET, "/auth/token"), Lookup::WrongMethod);
    }
}
