//! The routes every service's runner answers ([`crate::routes::operations`]), described
//! here beside where they are served ([`crate::Service`]): in every service's document, in
//! front of no token check and no HTTP slot.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::describe::Operation;
use super::document::{insert, operation};
use super::responses::Front;
use super::schema::Generators;
use crate::routes::{Route, operations};
use crate::service::Readiness;

/// The tag of these routes.
const TAG: &str = "operations";

pub(crate) fn tag() -> Value {
    json!({
        "name": TAG,
        "description": "Health, readiness, metrics and this document, for operators and orchestrators; open, and never through the gateway.",
    })
}

/// Adds the runner's routes to a service's `paths`.
pub(crate) fn add(paths: &mut Map<String, Value>, generators: &mut Generators) {
    for row in operations::ROUTES {
        let item = operation(TAG, row, &described(row), Front::Runner, generators);
        insert(paths, row.path.to_owned(), row.verb, item);
    }
}

fn described(row: &Route) -> Operation {
    if *row == operations::HEALTH {
        Operation::new("Whether the process is alive").text_reply(StatusCode::OK, "`ok`.")
    } else if *row == operations::READY {
        Operation::new("Whether the database and broker connections are up")
            .reply::<Readiness>(StatusCode::OK, "Ready.")
            .reply::<Readiness>(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not ready: the fields say which connection is down.",
            )
    } else if *row == operations::METRICS {
        Operation::new("Prometheus metrics")
            .text_reply(StatusCode::OK, "The Prometheus text exposition format.")
    } else {
        Operation::new("This service's OpenAPI document").reply_object(
            StatusCode::OK,
            "An OpenAPI 3.1 document: every route of the service's table, and these.",
        )
    }
}
