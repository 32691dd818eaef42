//! Every service's HTTP routes as data: the method, the path template, who may call it,
//! and whether the gateway publishes it. A service builds its router from its table, which
//! its declaration carries; the gateway's allow-list is the tables of the services it is
//! given, and the end-to-end route matrix calls every row as every kind of caller; a route
//! without a row fails the service's build.
//!
//! # Layout
//!
//! - `route`: a row: [`Route`], with its [`Verb`], [`Access`] and [`Exposure`].
//! - `template`: a request's path against a row's template, read as axum reads it.
//! - `lookup`: which service's row a request to the gateway names.
//! - `build`: a service's axum routers made from its table.
//! - `probe`: the check of a service's router against its table, for its unit test.
//! - `gateway`: the routes the gateway answers itself.
//! - `operations`: health, readiness and metrics, which every service answers.

mod build;
mod lookup;
mod probe;
mod route;
mod template;

pub mod gateway;
pub mod operations;

pub use build::{Routes, StatefulRoutes, TableMismatch};
pub use lookup::{Lookup, lookup};
pub use probe::{assert_serves, probe_pool, unserved};
pub use route::{Access, Exposure, RateClass, Route, Verb};
pub use template::matches;

/// A service's routes, by the service's name: what the gateway routes and documents by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceTable {
    pub service: &'static str,
    pub routes: &'static [Route],
}

impl ServiceTable {
    /// The rows the gateway publishes.
    pub fn published(&self) -> impl Iterator<Item = &'static Route> + use<> {
        self.routes.iter().filter(|route| route.through_gateway())
    }
}

/// Every row of `tables`, each with its service's name.
pub fn rows(tables: &[ServiceTable]) -> impl Iterator<Item = (&'static str, &'static Route)> {
    tables
        .iter()
        .flat_map(|table| table.routes.iter().map(move |route| (table.service, route)))
}

/// What makes `tables` unfit for the gateway, one sentence each: a path no router takes
/// (not starting with `/`, ending with one, or with `*` or `:`), a row twice in a table, a
/// published template that two services answer (which would the gateway send it to?), or
/// one the gateway answers itself. Internal templates may repeat: several services keep a
/// `/cache/users/{id}`.
pub fn conflicts(tables: &[ServiceTable]) -> Vec<String> {
    let mut problems: Vec<String> = tables.iter().flat_map(malformed).collect();
    for (service, route) in rows(tables).filter(|(_, route)| route.through_gateway()) {
        let path = template::example(route.path, "x");
        let sharing = rows(tables).find(|&(other, other_route)| {
            other != service && template::example(other_route.path, "x") == path
        });
        if let Some((other, _)) = sharing {
            problems.push(format!(
                "{service} publishes {route} and {other} has the same path: one of them must change it"
            ));
        }
        let own = gateway::ROUTES
            .iter()
            .find(|own| template::example(own.path, "x") == path);
        if let Some(own) = own {
            problems.push(format!(
                "{service} publishes {route}, which the gateway answers itself ({own})"
            ));
        }
    }
    problems
}

/// `table`'s rows that no router takes, or that it has twice.
fn malformed(table: &ServiceTable) -> Vec<String> {
    let service = table.service;
    let mut problems = Vec::new();
    for (index, row) in table.routes.iter().enumerate() {
        if !row.path.starts_with('/') || row.path.ends_with('/') || row.path.contains(['*', ':']) {
            problems.push(format!(
                "{service}'s {row}: a path starts with '/', does not end with one and has no '*' or ':'"
            ));
        }
        let again = table.routes[index + 1..]
            .iter()
            .any(|other| (other.verb, other.path) == (row.verb, row.path));
        if again {
            problems.push(format!("{service} has {row} twice"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    const ADMIN: Access = Access::Scope(crate::auth::Scope::ADMIN);

    const ACCOUNTS: ServiceTable = ServiceTable {
        service: "accounts",
        routes: &[
            Route::sign_in(Verb::Post, "/auth/token"),
            Route::api(Verb::Get, "/accounts/{id}", Access::Owner),
            Route::internal(Verb::Post, "/accounts/republish", ADMIN),
        ],
    };

    const SHOP: ServiceTable = ServiceTable {
        service: "shop",
        routes: &[
            Route::api(Verb::Get, "/baskets/{id}", Access::Owner),
            Route::internal(Verb::Get, "/cache/accounts/{id}", ADMIN),
        ],
    };

    const LEDGER: ServiceTable = ServiceTable {
        service: "ledger",
        routes: &[
            Route::api(Verb::Get, "/entries", Access::Owner),
            Route::internal(Verb::Get, "/cache/accounts/{id}", ADMIN),
        ],
    };

    const TABLES: &[ServiceTable] = &[ACCOUNTS, SHOP, LEDGER];

    #[test]
    fn the_gateway_finds_published_rows_and_nothing_internal() {
        let found = |method: Method, path: &str| match lookup(TABLES, &method, path) {
            Lookup::Found { service, route } => Some((service, route.path)),
            Lookup::WrongMethod | Lookup::NotFound => None,
        };
        let basket = Some(("shop", "/baskets/{id}"));
        assert_eq!(found(Method::GET, "/baskets/1"), basket);
        assert_eq!(found(Method::HEAD, "/baskets/1"), basket);
        let token = Some(("accounts", "/auth/token"));
        assert_eq!(found(Method::POST, "/auth/token"), token);
        for (method, path) in [
            (Method::GET, "/cache/accounts/1"),
            // The internal literal outranks the published template, as in the router.
            (Method::POST, "/accounts/republish"),
            (Method::GET, "/accounts/republish"),
            (Method::GET, "/healthz"),
            (Method::GET, "/baskets/"),
            (Method::GET, "/baskets/1/items"),
        ] {
            let found = lookup(TABLES, &method, path);
            assert_eq!(found, Lookup::NotFound, "{method} {path}");
        }
        let wrong = lookup(TABLES, &Method::DELETE, "/baskets/1");
        assert_eq!(wrong, Lookup::WrongMethod);
        let wrong = lookup(TABLES, &Method::GET, "/auth/token");
        assert_eq!(wrong, Lookup::WrongMethod);
    }

    #[test]
    fn tables_that_share_only_internal_templates_fit_together() {
        assert_eq!(conflicts(TABLES), Vec::<String>::new());
        let own = ServiceTable {
            service: "gateway",
            routes: gateway::ROUTES,
        };
        let runner = ServiceTable {
            service: "operations",
            routes: operations::ROUTES,
        };
        assert_eq!(malformed(&own), Vec::<String>::new());
        assert_eq!(malformed(&runner), Vec::<String>::new());
    }

    #[test]
    fn a_published_path_two_services_answer_or_a_bad_row_is_named() {
        const THIEF: ServiceTable = ServiceTable {
            service: "thief",
            routes: &[
                Route::api(Verb::Post, "/baskets/{basket}", Access::Owner),
                Route::api(Verb::Get, "/users/{id}/summary", Access::Owner),
                Route::api(Verb::Get, "/entries/", Access::Owner),
                Route::api(Verb::Get, "/:id", Access::Owner),
                Route::internal(Verb::Get, "/twice", ADMIN),
                Route::internal(Verb::Get, "/twice", ADMIN),
            ],
        };
        let problems = conflicts(&[SHOP, THIEF]);
        let named = |words: &str| problems.iter().any(|problem| problem.contains(words));
        assert!(
            named("thief publishes POST /baskets/{basket} and shop"),
            "{problems:#?}"
        );
        assert!(
            named("shop publishes GET /baskets/{id} and thief"),
            "{problems:#?}"
        );
        assert!(named("which the gateway answers itself"), "{problems:#?}");
        assert!(named("thief's GET /entries/"), "{problems:#?}");
        assert!(named("thief's GET /:id"), "{problems:#?}");
        assert!(named("thief has GET /twice twice"), "{problems:#?}");
        assert_eq!(problems.len(), 6, "{problems:#?}");
    }
}
