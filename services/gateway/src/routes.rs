//! Where each `/api/…` path goes, and which requests need no token: read from the
//! services' route tables ([`platform::routes`]), so the gateway publishes a route exactly
//! when its row says so, and nothing that has no row. Internal rows (cached copies,
//! reservations, republishing, signing keys, health) are answered 404, as unknown paths are.
//!
//! Both take a [`NormalPath`], never a raw one: the path matched here, the route class that
//! picks the rate bucket and the path forwarded are one string, which no service can read
//! as another path (see [`crate::path`]).

use std::sync::LazyLock;

use axum::http::Method;
use platform::routes::{Access, Exposure, Lookup, SERVICES};

use crate::path::NormalPath;

/// Rate limits are set per class of route; each row says its class.
pub use platform::routes::RateClass as RouteClass;

/// The services behind the gateway, in [`SERVICES`]' order.
pub const UPSTREAMS: [&str; 5] = ["users", "orders", "inventory", "payments", "shipping"];

/// A request the gateway knows where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The service, as named in [`UPSTREAMS`].
    pub service: &'static str,
    /// The path at the service (the `/api` prefix removed), with the query.
    pub upstream_path: String,
    pub class: RouteClass,
    /// Whether it may come without a token (signing in and signing up).
    pub open: bool,
}

/// Why the gateway has no route for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// No published row has this path: 404.
    Path,
    /// Published rows have this path, none this method: 405.
    Method,
}

/// The first segments of the published paths (`users`, `auth`, `orders`, …), each once, in
/// the tables' order. Read once: the metrics label asks at every request.
pub fn prefixes() -> &'static [&'static str] {
    static PREFIXES: LazyLock<Vec<&'static str>> = LazyLock::new(published_prefixes);
    PREFIXES.as_slice()
}

fn published_prefixes() -> Vec<&'static str> {
    let mut prefixes: Vec<&'static str> = Vec::new();
    let published = SERVICES
        .iter()
        .flat_map(|(_, table)| table.iter())
        .filter(|route| route.through_gateway());
    for route in published {
        let first = route.path.trim_start_matches('/').split('/').next();
        if let Some(first) = first.filter(|first| !prefixes.contains(first)) {
            prefixes.push(first);
        }
    }
    prefixes
}

/// The label metrics count `path` under: its known `/api/` prefix (`/api/orders/…`), so
/// the series stay few whatever paths clients send; `unmatched` for any other.
pub fn metrics_label(path: &str) -> String {
    let first = path
        .strip_prefix("/api/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if prefixes().contains(&first) {
        format!("/api/{first}/…")
    } else {
        "unmatched".to_owned()
    }
}

/// The route of `method` and `path` (with its query): the row of a service's table that
/// the path under `/api` names, when the gateway publishes it.
///
/// The path sent on is `path` itself without `/api`: a [`NormalPath`] has no dot segment,
/// encoded separator or other spelling that the service could resolve outside the row
/// matched here.
///
/// # Errors
/// [`NoRoute`]: no published row has the path, or none has it with this method.
pub fn route(method: &Method, path: &NormalPath, query: Option<&str>) -> Result<Route, NoRoute> {
    let at_service = path
        .as_str()
        .strip_prefix("/api")
        .filter(|rest| rest.starts_with('/'))
        .ok_or(NoRoute::Path)?;
    let (service, row) = match platform::routes::lookup(method, at_service) {
        Lookup::Found { service, route } => (service, route),
        Lookup::WrongMethod => return Err(NoRoute::Method),
        Lookup::NotFound => return Err(NoRoute::Path),
    };
    let Exposure::Gateway(class) = row.exposure else {
        return Err(NoRoute::Path);
    };
    let mut upstream_path = at_service.to_owned();
    if let Some(query) = query {
        upstream_path.push('?');
        upstream_path.push_str(query);
    }
    Ok(Route {
        service,
        upstream_path,
        class,
        open: row.access == Access::Open,
    })
}

#[cfg(test)]
mod tests {
    use platform::routes::gateway::{EVENTS, SUMMARY};

    use super::*;
    use crate::path::normalise;

    fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, NoRoute> {
        super::route(method, &normalise(path).unwrap(), query)
    }

    #[test]
    fn metrics_count_paths_by_their_prefix_only() {
        assert_eq!(metrics_label("/api/orders/0192f1c4-7e1a"), "/api/orders/…");
        assert_eq!(metrics_label("/api/auth/token"), "/api/auth/…");
        assert_eq!(
            metrics_label("/api/whatever-an-attacker-sends"),
            "unmatched"
        );
        assert_eq!(metrics_label("/favicon.ico"), "unmatched");
        assert_eq!(
            prefixes(),
            [
                "users",
                "auth",
                "orders",
                "products",
                "payments",
                "shipments"
            ]
        );
    }

    #[test]
    fn the_upstreams_are_the_services_with_tables() {
        let named: Vec<&str> = SERVICES.iter().map(|(service, _)| *service).collect();
        assert_eq!(named, UPSTREAMS);
        // The gateway's own routes are limited as their rows say.
        assert_eq!(SUMMARY.exposure, Exposure::Gateway(RouteClass::Read));
        assert_eq!(EVENTS.exposure, Exposure::Gateway(RouteClass::Write));
    }

    #[test]
    fn each_published_row_goes_to_its_service_with_the_query() {
        let cases = [
            (
                Method::POST,
                "/api/auth/token",
                "users",
                "/auth/token",
                RouteClass::Auth,
            ),
            (
                Method::GET,
                "/api/users/7",
                "users",
                "/users/7",
                RouteClass::Read,
            ),
            (
                Method::GET,
                "/api/orders",
                "orders",
                "/orders",
                RouteClass::Read,
            ),
            (
                Method::POST,
                "/api/orders",
                "orders",
                "/orders",
                RouteClass::Write,
            ),
            (
                Method::GET,
                "/api/products/LAMP",
                "inventory",
                "/products/LAMP",
                RouteClass::Read,
            ),
            (
                Method::GET,
                "/api/payments",
                "payments",
                "/payments",
                RouteClass::Read,
            ),
            (
                Method::GET,
                "/api/shipments",
                "shipping",
                "/shipments",
                RouteClass::Read,
            ),
            (
                Method::POST,
                "/api/users",
                "users",
                "/users",
                RouteClass::Auth,
            ),
            (
                Method::POST,
                "/api/auth/clients",
                "users",
                "/auth/clients",
                RouteClass::Write,
            ),
        ];
        for (method, path, service, upstream, class) in cases {
            let route = route(&method, path, None).unwrap();
            assert_eq!(
                (route.service, route.upstream_path.as_str(), route.class),
                (service, upstream, class),
                "{method} {path}"
            );
        }
        let with_query = route(&Method::GET, "/api/payments", Some("order_id=1")).unwrap();
        assert_eq!(with_query.upstream_path, "/payments?order_id=1");
    }

    #[test]
    fn internal_rows_and_paths_in_no_row_have_no_route() {
        for (method, path) in [
            (Method::GET, "/api/cache/users/1"),
            (Method::GET, "/api/reservations/1"),
            (Method::POST, "/api/users/republish"),
            (Method::POST, "/api/products/republish"),
            (Method::POST, "/api/auth/keys"),
            (Method::POST, "/api/auth/keys/k1/retire"),
            (Method::GET, "/api/.well-known/jwks.json"),
            (Method::GET, "/api/healthz"),
            (Method::GET, "/api"),
            (Method::GET, "/api/"),
            (Method::GET, "/orders"),
            (Method::GET, "/api/orders/"),
            (Method::GET, "/api/ordersx/1"),
            (Method::GET, "/api/orders/1/refund"),
        ] {
            let found = route(&method, path, None);
            assert_eq!(found, Err(NoRoute::Path), "{method} {path}");
        }
        assert_eq!(
            route(&Method::DELETE, "/api/orders/1", None),
            Err(NoRoute::Method)
        );
    }

    #[test]
    fn the_path_sent_on_is_the_path_matched() {
        let path = "/api/products/caf%C3%A9";
        let route = route(&Method::GET, path, Some("x=%2e%2e")).unwrap();
        assert_eq!(route.service, "inventory");
        assert_eq!(route.upstream_path, "/products/caf%C3%A9?x=%2e%2e");
    }

    #[test]
    fn only_getting_a_token_and_signing_up_are_open() {
        let open = |method: Method, path: &str| route(&method, path, None).unwrap().open;
        assert!(open(Method::POST, "/api/auth/token"));
        assert!(open(Method::POST, "/api/users"));
        assert!(!open(Method::GET, "/api/users/1"));
        assert!(!open(Method::POST, "/api/auth/clients"));
        assert!(!open(Method::GET, "/api/orders"));
    }
}
