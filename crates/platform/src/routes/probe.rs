//! The check each service's unit test runs on its router: axum cannot list the routes a
//! router serves, so the router is asked instead. Every row must be answered by a handler
//! (not the router's own 404 or 405), every other method of a row's path must be 405, and a
//! path in no row must be 404.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::MethodRouter;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::template::example;
use super::{Route, TableMismatch, Verb};

/// A pool for a service's state in a unit test, with no database behind it: the probe's
/// requests carry no token and are refused (401) before any query, and one that reaches
/// the database anyway fails within a fraction of a second (503), never 404 or 405.
/// Call it inside a Tokio runtime (`#[tokio::test]`): the pool starts its upkeep there.
///
/// # Errors
/// Never in practice: the URL is a constant.
pub fn probe_pool() -> sqlx::Result<PgPool> {
    PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://probe@127.0.0.1:1/probe")
}

/// How `router` and `table` disagree, one sentence each; empty when they agree.
/// The unit test every service runs on its router: panics, naming each problem, unless the
/// routers `finish` made serve exactly `table`.
pub async fn assert_serves(routers: Result<(Router, Router), TableMismatch>, table: &[Route]) {
    let (guarded, open) = routers.unwrap_or_else(|mismatch| panic!("{mismatch}"));
    let problems = unserved(&guarded.merge(open), table).await;
    assert!(problems.is_empty(), "{problems:#?}");
}

pub async fn unserved(router: &Router, table: &[Route]) -> Vec<String> {
    let mut problems = Vec::new();
    for row in table {
        let path = example(row.path, "probe");
        let (status, body) = send(router, row.verb, &path).await;
        let by_the_router = status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && body.is_empty());
        if by_the_router {
            problems.push(format!(
                "{row} is not served: {} {path} is {status}",
                row.verb
            ));
        }
    }
    problems.extend(other_methods_served(router, table).await);
    let (status, _) = send(router, Verb::Get, "/a-path-in-no-route-table").await;
    if status != StatusCode::NOT_FOUND {
        problems.push(format!("a path in no row is {status}, not 404"));
    }
    problems
}

/// The methods a row's path is served with although no row has them.
async fn other_methods_served(router: &Router, table: &[Route]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut paths: Vec<&str> = table.iter().map(|row| row.path).collect();
    paths.sort_unstable();
    paths.dedup();
    for template in paths {
        let path = example(template, "probe");
        for verb in Verb::ALL {
            if table
                .iter()
                .any(|row| row.path == template && row.verb == verb)
            {
                continue;
            }
            let (status, _) = send(router, verb, &path).await;
            if status != StatusCode::METHOD_NOT_ALLOWED {
                problems.push(format!(
                    "{verb} {template} has no row but is {status}, not 405"
                ));
            }
        }
    }
    problems
}

/// `verb path` through `router`, without a token: the status and the body.
async fn send(router: &Router, verb: Verb, path: &str) -> (StatusCode, Vec<u8>) {
    let request = match axum::http::Request::builder()
        .method(verb.method())
        .uri(path)
        .body(Body::empty())
    {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string().into_bytes()),
    };
    // A router is called as a handler: no tower import, and the same dispatch as serving.
    let service: MethodRouter = axum::routing::any_service(router.clone());
    let response = <MethodRouter as Handler<(), ()>>::call(service, request, ()).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default();
    (status, body)
}
