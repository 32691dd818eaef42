//! Which service's row a request to the gateway names. The gateway forwards only what this
//! finds, so its allow-list is the services' tables and nothing else.

use axum::http::Method;

use super::template::{matches, specificity};
use super::{Route, ServiceTable, Verb, rows};

/// What the tables say of a request's method and path (the path at the service: the
/// gateway's `/api` prefix taken off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A row the gateway publishes, and the service that serves it.
    Found {
        service: &'static str,
        route: &'static Route,
    },
    /// The path is a published route's; the method is not.
    WrongMethod,
    /// No published route has this path. A path whose rows are all internal is answered
    /// the same, so the gateway does not even tell that it exists.
    NotFound,
}

/// Looks `method` and `path` up in every table of `tables`. The template is chosen among
/// all rows, internal ones too, as the service's router would choose it
/// (`/users/republish` before `/users/{id}`), so the gateway never forwards a request
/// that the service would read as another route.
pub fn lookup(tables: &[ServiceTable], method: &Method, path: &str) -> Lookup {
    let Some(template) = most_specific(tables, path) else {
        return Lookup::NotFound;
    };
    let published: Vec<(&'static str, &'static Route)> = rows(tables)
        .filter(|(_, route)| route.path == template && route.through_gateway())
        .collect();
    let verb = Verb::of(method);
    match published.iter().find(|(_, route)| Some(route.verb) == verb) {
        Some(&(service, route)) => Lookup::Found { service, route },
        None if published.is_empty() => Lookup::NotFound,
        None => Lookup::WrongMethod,
    }
}

/// The template that `path` is read as, if any row's fits it.
fn most_specific(tables: &[ServiceTable], path: &str) -> Option<&'static str> {
    rows(tables)
        .map(|(_, route)| route.path)
        .filter(|template| matches(template, path))
        .max_by_key(|template| specificity(template))
}
