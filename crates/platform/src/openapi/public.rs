//! The gateway's public document: every row a service's table publishes, as that service's
//! own document describes it, under `/api`; the gateway's own routes; and on each what the
//! gateway itself may answer in front of the service (a refused path, a client over its
//! rate, a body too large, a service that does not answer). Made from the documents the
//! services serve, so the gateway holds no copy of what they take and answer.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::describe::Operation;
use super::document::{frame, insert, operation};
use super::responses::{Front, add, error, path_refused, too_many};
use super::schema::Generators;
use crate::routes::{Route, ServiceTable};

/// The public document of the services of `tables`, from the gateway's own document
/// (`own`, paths without `/api`) and each service's document by name. A published row its service's document lacks (a
/// service of another release) is described from its row alone.
pub fn public_document(own: &Value, tables: &[ServiceTable], services: &[(&str, Value)]) -> Value {
    let mut generators = Generators::new();
    let mut paths = Map::new();
    let mut tags = Vec::new();
    for table in tables {
        let service = table.service;
        tags.push(json!({
            "name": service,
            "description": format!("Sent on to the {service} service."),
        }));
        let document = services
            .iter()
            .find(|(name, _)| *name == service)
            .map(|(_, document)| document);
        for row in table.published() {
            let mut described = document
                .and_then(|document| document["paths"].get(row.path))
                .and_then(|item| item.get(row.verb.as_str().to_ascii_lowercase()))
                .cloned()
                .unwrap_or_else(|| undescribed(service, row, &mut generators));
            sent_on(&mut described);
            insert(&mut paths, row.api_path(), row.verb, described);
        }
    }
    tags.push(json!({
        "name": "gateway",
        "description": "Answered by the gateway itself.",
    }));
    if let Some(own_paths) = own["paths"].as_object() {
        for (path, item) in own_paths {
            for (method, described) in item.as_object().into_iter().flatten() {
                paths
                    .entry(format!("/api{path}"))
                    .or_insert_with(|| json!({}))[method] = described.clone();
            }
        }
    }
    let description = "Conveyor's public HTTP API: every route the services publish through the gateway, at `/api` followed by the service's path, and the gateway's own. Each is described by its service's own document.";
    frame("Conveyor API", description, Value::Array(tags), paths)
}

/// A published row its service does not describe.
fn undescribed(service: &str, row: &Route, generators: &mut Generators) -> Value {
    let described = Operation::new("Not described by its service's document");
    operation(service, row, &described, Front::Service, generators)
}

/// What the gateway adds to an operation it sends on.
fn sent_on(described: &mut Value) {
    let has_body = described.get("requestBody").is_some();
    let Some(responses) = described["responses"].as_object_mut() else {
        return;
    };
    add(responses, StatusCode::BAD_REQUEST, path_refused());
    add(responses, StatusCode::TOO_MANY_REQUESTS, too_many());
    if has_body {
        add(
            responses,
            StatusCode::PAYLOAD_TOO_LARGE,
            error("The body is larger than the gateway sends on (1 MiB)."),
        );
    }
    add(
        responses,
        StatusCode::BAD_GATEWAY,
        error("The service could not be reached."),
    );
    add(
        responses,
        StatusCode::GATEWAY_TIMEOUT,
        error("The service did not answer in time (`GATEWAY_UPSTREAM_TIMEOUT`)."),
    );
}
