//! The gateway in front of the roster's services: it publishes what their declarations'
//! tables publish, so a new service's routes reach `/api` with its line in the roster.

use platform::routes::ServiceTable;

use crate::roster::SERVICES;

/// Every service's route table, in the roster's order.
pub fn route_tables() -> Vec<ServiceTable> {
    SERVICES.iter().map(|service| service.table()).collect()
}

/// The gateway's settings from the environment, in front of every service of the roster.
///
/// # Errors
/// As [`api_gateway::Settings::from_env`].
pub fn gateway_settings() -> Result<api_gateway::Settings, platform::ConfigError> {
    api_gateway::Settings::from_env(SERVICES)
}

/// Every variable the gateway reads in front of the roster's services, as (variables,
/// meaning with its default).
pub fn gateway_settings_help() -> Vec<(String, String)> {
    api_gateway::gateway_settings(SERVICES)
}

#[cfg(test)]
mod tests {
    use api_gateway::path::normalise;
    use api_gateway::routes::{NoRoute, RouteClass, RouteTable};
    use axum::http::Method;

    use super::*;

    fn route(method: &Method, path: &str) -> Result<(&'static str, String, RouteClass), NoRoute> {
        let route =
            RouteTable::new(&route_tables()).route(method, &normalise(path).unwrap(), None)?;
        Ok((route.service, route.upstream_path, route.class))
    }

    #[test]
    fn the_services_tables_fit_together_behind_the_gateway() {
        assert_eq!(
            platform::routes::conflicts(&route_tables()),
            Vec::<String>::new()
        );
        let prefixes = RouteTable::new(&route_tables()).prefixes().to_vec();
        let expected = [
            "users",
            "auth",
            "products",
            "orders",
            "returns",
            "payments",
            "shipments",
        ];
        assert_eq!(prefixes, expected);
    }

    #[test]
    fn each_published_row_goes_to_its_service() {
        let cases = [
            (Method::POST, "/api/auth/token", "users", RouteClass::Auth),
            (Method::POST, "/api/users", "users", RouteClass::Auth),
            (Method::GET, "/api/users/7", "users", RouteClass::Read),
            (
                Method::POST,
                "/api/auth/clients",
                "users",
                RouteClass::Write,
            ),
            (Method::POST, "/api/orders", "orders", RouteClass::Write),
            (Method::HEAD, "/api/orders/1", "orders", RouteClass::Read),
            (
                Method::PUT,
                "/api/products/A-1/stock",
                "inventory",
                RouteClass::Write,
            ),
            (Method::GET, "/api/payments", "payments", RouteClass::Read),
            (Method::GET, "/api/shipments", "shipping", RouteClass::Read),
        ];
        for (method, path, service, class) in cases {
            let at_service = path.strip_prefix("/api").unwrap().to_owned();
            let expected = Ok((service, at_service, class));
            assert_eq!(route(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn internal_rows_are_not_published() {
        for (method, path) in [
            (Method::GET, "/api/cache/users/1"),
            (Method::GET, "/api/cache/products/A-1"),
            (Method::GET, "/api/reservations/1"),
            (Method::POST, "/api/users/republish"),
            (Method::GET, "/api/users/republish"),
            (Method::POST, "/api/products/republish"),
            (Method::POST, "/api/auth/keys"),
            (Method::POST, "/api/auth/keys/k1/retire"),
            (Method::GET, "/api/.well-known/jwks.json"),
            (Method::GET, "/api/healthz"),
            (Method::GET, "/api/orders/1/refund"),
        ] {
            assert_eq!(route(&method, path), Err(NoRoute::Path), "{method} {path}");
        }
        assert_eq!(
            route(&Method::DELETE, "/api/orders/1"),
            Err(NoRoute::Method)
        );
        assert_eq!(route(&Method::GET, "/api/auth/token"), Err(NoRoute::Method));
    }
}
