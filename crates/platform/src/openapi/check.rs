//! How a document and the rows it should describe disagree, for the tests that hold each
//! service's document, and the gateway's, to the route tables.

use serde_json::Value;

use super::document::{security, template_names};
use crate::routes::{self, Route, ServiceTable, gateway};

/// The rows a service's document describes, each at its path: the service's table and the
/// runner's routes.
pub fn service_rows(table: &[Route]) -> Vec<(String, Route)> {
    table
        .iter()
        .chain(routes::operations::ROUTES)
        .map(|row| (row.path.to_owned(), *row))
        .collect()
}

/// The rows the gateway's public document describes, each at its path under `/api`: every
/// published row of the services of `tables`, and the gateway's own.
pub fn public_rows(tables: &[ServiceTable]) -> Vec<(String, Route)> {
    tables
        .iter()
        .flat_map(ServiceTable::published)
        .chain(gateway::ROUTES)
        .map(|row| (row.api_path(), *row))
        .collect()
}

/// Every operation of `document`: its method (upper-case, `GET`) and path.
pub fn operations(document: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for (method, _) in item.as_object().into_iter().flatten() {
            found.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    found
}

/// How `document` and `rows` disagree, one sentence each: a row without an operation, an
/// operation of no row, security other than the row's access says, or a path parameter
/// the operation does not describe. Empty when they agree.
/// The unit test every service runs on its document: panics, naming each problem, unless it
/// describes every row of `table` (the runner's own rows included) and nothing else.
pub fn assert_describes(document: &Value, table: &[Route]) {
    let problems = disagreements(document, &service_rows(table));
    assert!(problems.is_empty(), "{problems:#?}");
}

pub fn disagreements(document: &Value, rows: &[(String, Route)]) -> Vec<String> {
    let mut problems = Vec::new();
    if !document["openapi"]
        .as_str()
        .is_some_and(|version| version.starts_with("3.1."))
    {
        problems.push(format!("openapi is {}, not 3.1.x", document["openapi"]));
    }
    for (method, path) in operations(document) {
        if !rows
            .iter()
            .any(|(at, row)| *at == path && row.verb.as_str() == method)
        {
            problems.push(format!("{method} {path} is in the document but is no row"));
        }
    }
    for (path, row) in rows {
        let method = row.verb.as_str().to_ascii_lowercase();
        let described = document["paths"]
            .get(path)
            .and_then(|item| item.get(&method));
        let Some(described) = described else {
            problems.push(format!(
                "{} {path} is a row but not in the document",
                row.verb
            ));
            continue;
        };
        if described["security"] != security(row.access) {
            problems.push(format!(
                "{} {path}: security {} is not its row's access, {:?}",
                row.verb, described["security"], row.access
            ));
        }
        for name in template_names(path) {
            let declared = described["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|param| param["in"] == "path" && param["name"] == name);
            if !declared {
                problems.push(format!("{} {path}: no parameter {name}", row.verb));
            }
        }
    }
    problems
}
