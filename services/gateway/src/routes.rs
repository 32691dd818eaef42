//! Where each `/api/…` path goes, and which requests need no token.

use axum::http::Method;

/// The services behind the gateway.
pub const UPSTREAMS: [&str; 5] = ["users", "orders", "inventory", "payments", "shipping"];

/// A request the gateway knows where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The service, as named in [`UPSTREAMS`].
    pub service: &'static str,
    /// The path at the service (the `/api` prefix removed), with the query.
    pub upstream_path: String,
    pub class: RouteClass,
}

/// Rate limits are set per class of route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteClass {
    /// Signing in and signing up: tight, since they cost a password hash each.
    Auth,
    /// GET requests.
    Read,
    /// Everything else.
    Write,
}

impl RouteClass {
    pub const ALL: [Self; 3] = [Self::Auth, Self::Read, Self::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// The first segment after `/api/` and the service it belongs to. The path at the service
/// keeps the segment (`/api/orders/1` → orders' `/orders/1`).
const PREFIXES: [(&str, &str); 6] = [
    ("auth", "users"),
    ("users", "users"),
    ("orders", "orders"),
    ("products", "inventory"),
    ("payments", "payments"),
    ("shipments", "shipping"),
];

/// The label metrics count `path` under: its known `/api/` prefix (`/api/orders/…`), so
/// the series stay few whatever paths clients send; `unmatched` for any other.
pub fn metrics_label(path: &str) -> String {
    let first = path
        .strip_prefix("/api/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if PREFIXES.iter().any(|(prefix, _)| *prefix == first) {
        format!("/api/{first}/…")
    } else {
        "unmatched".to_owned()
    }
}

/// The route of `path` (with its query), or `None` when it is not under a known prefix.
pub fn route(method: &Method, path: &str, query: Option<&str>) -> Option<Route> {
    let rest = path.strip_prefix("/api/")?;
    let first = rest.split('/').next().unwrap_or_default();
    let service = PREFIXES
        .iter()
        .find(|(prefix, _)| *prefix == first)
        .map(|(_, service)| *service)?;
    // `..` could climb out of the prefix at a service that normalises paths.
    if rest
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return None;
    }
    let mut upstream_path = format!("/{rest}");
    if let Some(query) = query {
        upstream_path.push('?');
        upstream_path.push_str(query);
    }
    let class = if first == "auth" || is_sign_up(method, path) {
        RouteClass::Auth
    } else if method == Method::GET {
        RouteClass::Read
    } else {
        RouteClass::Write
    };
    Some(Route {
        service,
        upstream_path,
        class,
    })
}

fn is_sign_up(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == "/api/users"
}

/// Whether a request may pass without a token: getting one, and signing up.
pub fn is_open(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/api/auth/token") || is_sign_up(method, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_paths_by_their_prefix_only() {
        assert_eq!(metrics_label("/api/orders/0192f1c4-7e1a"), "/api/orders/…");
        assert_eq!(metrics_label("/api/auth/token"), "/api/auth/…");
        assert_eq!(
            metrics_label("/api/whatever-an-attacker-sends"),
            "unmatched"
        );
        assert_eq!(metrics_label("/favicon.ico"), "unmatched");
    }

    #[test]
    fn each_prefix_goes_to_its_service_with_the_query() {
        let cases = [
            ("/api/auth/token", "users", "/auth/token", RouteClass::Auth),
            ("/api/users/7", "users", "/users/7", RouteClass::Read),
            ("/api/orders", "orders", "/orders", RouteClass::Read),
            (
                "/api/products/LAMP",
                "inventory",
                "/products/LAMP",
                RouteClass::Read,
            ),
            ("/api/payments", "payments", "/payments", RouteClass::Read),
            ("/api/shipments", "shipping", "/shipments", RouteClass::Read),
        ];
        for (path, service, upstream, class) in cases {
            let route = route(&Method::GET, path, None).unwrap();
            assert_eq!(
                (route.service, route.upstream_path.as_str(), route.class),
                (service, upstream, class)
            );
        }
        let with_query = route(&Method::GET, "/api/payments", Some("order_id=1")).unwrap();
        assert_eq!(with_query.upstream_path, "/payments?order_id=1");
        assert_eq!(
            route(&Method::POST, "/api/orders", None).unwrap().class,
            RouteClass::Write
        );
        assert_eq!(
            route(&Method::POST, "/api/users", None).unwrap().class,
            RouteClass::Auth
        );
    }

    #[test]
    fn unknown_prefixes_and_climbing_paths_have_no_route() {
        for path in [
            "/api/cache/users/1",
            "/api",
            "/orders",
            "/api/orders/../cache/users/1",
            "/api/reservations/1",
        ] {
            assert_eq!(route(&Method::GET, path, None), None, "{path}");
        }
    }

    #[test]
    fn only_getting_a_token_and_signing_up_are_open() {
        assert!(is_open(&Method::POST, "/api/auth/token"));
        assert!(is_open(&Method::POST, "/api/users"));
        assert!(!is_open(&Method::GET, "/api/users/1"));
        assert!(!is_open(&Method::POST, "/api/auth/clients"));
        assert!(!is_open(&Method::GET, "/api/orders"));
    }
}
