//! Where each `/api/…` path goes, and which requests need no token: read from the route
//! tables of the services the gateway is given (their declarations' tables), so the gateway
//! publishes a route exactly when its row says so, and nothing that has no row. Internal
//! rows (cached copies, reservations, republishing, signing keys, health) are answered 404,
//! as unknown paths are.
//!
//! Both take a [`NormalPath`], never a raw one: the path matched here, the route class that
//! picks the rate bucket and the path forwarded are one string, which no service can read
//! as another path (see [`crate::path`]).

use axum::http::Method;
use platform::routes::{Access, Exposure, Lookup, ServiceTable};

use crate::path::NormalPath;

/// Rate limits are set per class of route; each row says its class.
pub use platform::routes::RateClass as RouteClass;

/// A request the gateway knows where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The service, as its table names it.
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

/// The tables of the services behind the gateway, and the first segments of their
/// published paths, which the metrics label asks for at every request.
#[derive(Debug, Clone)]
pub struct RouteTable {
    tables: Vec<ServiceTable>,
    prefixes: Vec<&'static str>,
}

impl RouteTable {
    pub fn new(tables: &[ServiceTable]) -> Self {
        let mut prefixes: Vec<&'static str> = Vec::new();
        for route in tables.iter().flat_map(ServiceTable::published) {
            let first = route.path.trim_start_matches('/').split('/').next();
            if let Some(first) = first.filter(|first| !prefixes.contains(first)) {
                prefixes.push(first);
            }
        }
        Self {
            tables: tables.to_vec(),
            prefixes,
        }
    }

    pub fn tables(&self) -> &[ServiceTable] {
        &self.tables
    }

    /// The first segments of the published paths (`users`, `auth`, `orders`, …), each once,
    /// in the tables' order.
    pub fn prefixes(&self) -> &[&'static str] {
        &self.prefixes
    }

    /// The label metrics count `path` under: its known `/api/` prefix (`/api/orders/…`), so
    /// the series stay few whatever paths clients send; `unmatched` for any other.
    pub fn metrics_label(&self, path: &str) -> String {
        let first = path
            .strip_prefix("/api/")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        if self.prefixes.contains(&first) {
            format!("/api/{first}/…")
        } else {
            "unmatched".to_owned()
        }
    }

    /// The route of `method` and `path` (with its query): the row of a service's table
    /// that the path under `/api` names, when the gateway publishes it.
    ///
    /// The path sent on is `path` itself without `/api`: a [`NormalPath`] has no dot
    /// segment, encoded separator or other spelling that the service could resolve outside
    /// the row matched here.
    ///
    /// # Errors
    /// [`NoRoute`]: no published row has the path, or none has it with this method.
    pub fn route(
        &self,
        method: &Method,
        path: &NormalPath,
        query: Option<&str>,
    ) -> Result<Route, NoRoute> {
        let at_service = path
            .as_str()
            .strip_prefix("/api")
            .filter(|rest| rest.starts_with('/'))
            .ok_or(NoRoute::Path)?;
        let (service, row) = match platform::routes::lookup(&self.tables, method, at_service) {
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
}

#[cfg(test)]
mod tests {
    use platform::auth::Scope;
    use platform::routes::Verb;
    use platform::routes::gateway::{EVENTS, SUMMARY};

    use super::*;
    use crate::path::normalise;

    const TABLES: &[ServiceTable] = &[
        ServiceTable {
            service: "accounts",
            routes: &[
                platform::routes::Route::sign_in(Verb::Post, "/auth/token"),
                platform::routes::Route::api(Verb::Get, "/accounts/{id}", Access::Owner),
                platform::routes::Route::api(
                    Verb::Post,
                    "/auth/clients",
                    Access::Scope(Scope::ADMIN),
                ),
                platform::routes::Route::internal(
                    Verb::Post,
                    "/accounts/republish",
                    Access::Scope(Scope::ADMIN),
                ),
            ],
        },
        ServiceTable {
            service: "shop",
            routes: &[
                platform::routes::Route::api(Verb::Get, "/baskets", Access::Owner),
                platform::routes::Route::api(Verb::Post, "/baskets", Access::Owner),
                platform::routes::Route::api(Verb::Get, "/baskets/{id}", Access::Owner),
                platform::routes::Route::internal(
                    Verb::Get,
                    "/cache/accounts/{id}",
                    Access::Scope(Scope::ADMIN),
                ),
            ],
        },
    ];

    fn route(method: &Method, path: &str, query: Option<&str>) -> Result<Route, NoRoute> {
        RouteTable::new(TABLES).route(method, &normalise(path).unwrap(), query)
    }

    #[test]
    fn metrics_count_paths_by_their_prefix_only() {
        let table = RouteTable::new(TABLES);
        assert_eq!(
            table.metrics_label("/api/baskets/0192f1c4"),
            "/api/baskets/…"
        );
        assert_eq!(table.metrics_label("/api/auth/token"), "/api/auth/…");
        let attacker = table.metrics_label("/api/whatever-an-attacker-sends");
        assert_eq!(attacker, "unmatched");
        assert_eq!(table.metrics_label("/favicon.ico"), "unmatched");
        // `cache` is only internal: no label of its own.
        assert_eq!(table.prefixes(), ["auth", "accounts", "baskets"]);
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
                "accounts",
                "/auth/token",
                RouteClass::Auth,
            ),
            (
                Method::GET,
                "/api/accounts/7",
                "accounts",
                "/accounts/7",
                RouteClass::Read,
            ),
            (
                Method::GET,
                "/api/baskets",
                "shop",
                "/baskets",
                RouteClass::Read,
            ),
            (
                Method::POST,
                "/api/baskets",
                "shop",
                "/baskets",
                RouteClass::Write,
            ),
            (
                Method::POST,
                "/api/auth/clients",
                "accounts",
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
        let with_query = route(&Method::GET, "/api/baskets", Some("owner=1")).unwrap();
        assert_eq!(with_query.upstream_path, "/baskets?owner=1");
    }

    #[test]
    fn internal_rows_and_paths_in_no_row_have_no_route() {
        for (method, path) in [
            (Method::GET, "/api/cache/accounts/1"),
            (Method::POST, "/api/accounts/republish"),
            (Method::GET, "/api/healthz"),
            (Method::GET, "/api"),
            (Method::GET, "/api/"),
            (Method::GET, "/baskets"),
            (Method::GET, "/api/baskets/"),
            (Method::GET, "/api/basketsx/1"),
            (Method::GET, "/api/baskets/1/items"),
        ] {
            let found = route(&method, path, None);
            assert_eq!(found, Err(NoRoute::Path), "{method} {path}");
        }
        let wrong = route(&Method::DELETE, "/api/baskets/1", None);
        assert_eq!(wrong, Err(NoRoute::Method));
    }

    #[test]
    fn the_path_sent_on_is_the_path_matched() {
        let path = "/api/baskets/caf%C3%A9";
        let route = route(&Method::GET, path, Some("x=%2e%2e")).unwrap();
        assert_eq!(route.service, "shop");
        assert_eq!(route.upstream_path, "/baskets/caf%C3%A9?x=%2e%2e");
    }

    #[test]
    fn only_the_rows_open_to_anyone_are_open() {
        let open = |method: Method, path: &str| route(&method, path, None).unwrap().open;
        assert!(open(Method::POST, "/api/auth/token"));
        assert!(!open(Method::GET, "/api/accounts/1"));
        assert!(!open(Method::POST, "/api/auth/clients"));
        assert!(!open(Method::GET, "/api/baskets"));
    }
}
