//! The OpenAPI documents as they are served. The gateway's `GET /api/openapi.json`, open to
//! anyone, is OpenAPI 3.1 with every published row of every route table as an operation
//! under `/api` and nothing else, each with the bearer security its row's access says, and
//! every schema in it a JSON Schema (2020-12, OpenAPI 3.1's dialect) that compiles; it is
//! the very document `scripts/validate-openapi` validates (made offline from the same
//! code); and each service's own `GET /openapi.json` describes its table and the runner's
//! routes.

use platform::openapi::{self, BEARER};
use platform::routes::{Access, Route};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::gateway::behind_a_gateway;
use crate::helpers::ALL;

/// Every schema in `value` (a document or a part of one), each with where it is.
fn schemas<'a>(value: &'a Value, at: &str, found: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(fields) => {
            for (key, inner) in fields {
                let here = format!("{at}/{key}");
                if key == "schema" {
                    found.push((here, inner));
                } else {
                    schemas(inner, &here, found);
                }
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                schemas(inner, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

/// The schemas of `document` that are not JSON Schemas, or do not compile (a pattern no
/// engine reads, say).
fn schema_problems(document: &Value) -> Vec<String> {
    let mut found = Vec::new();
    schemas(document, "", &mut found);
    assert!(!found.is_empty(), "no schema at all in {document}");
    let mut problems = Vec::new();
    for (at, schema) in found {
        if let Err(error) = jsonschema::draft202012::meta::validate(schema) {
            problems.push(format!("{at}: not a JSON Schema: {error}"));
        } else if let Err(error) = jsonschema::draft202012::new(schema) {
            problems.push(format!("{at}: does not compile: {error}"));
        }
    }
    problems
}

/// The security requirements a row's access calls for, spelled out here rather than taken
/// from the code that writes them: a token or none on an open row, else a bearer token
/// with the row's scope.
fn expected_security(access: Access) -> Value {
    match access {
        Access::Open => json!([{}, { BEARER: [] }]),
        Access::AnyCaller | Access::Owner => json!([{ BEARER: [] }]),
        Access::Scope(scope) | Access::Granted(scope) => json!([{ BEARER: [scope] }]),
    }
}

/// The rows whose operation in `document` has other security than their access says.
fn security_problems(document: &Value, rows: &[(String, Route)]) -> Vec<String> {
    let scheme = &document["components"]["securitySchemes"][BEARER];
    let mut problems = Vec::new();
    let bearer_jwt =
        scheme["type"] == "http" && scheme["scheme"] == "bearer" && scheme["bearerFormat"] == "JWT";
    if !bearer_jwt {
        problems.push(format!("the security scheme is not a bearer JWT: {scheme}"));
    }
    for (path, row) in rows {
        let method = row.verb.as_str().to_ascii_lowercase();
        let security = &document["paths"][path][&method]["security"];
        if *security != expected_security(row.access) {
            problems.push(format!("{} {path}: security {security}", row.verb));
        }
    }
    problems
}

#[tokio::test]
async fn the_gateway_publishes_a_document_of_every_published_row_and_nothing_else() {
    let (system, gateway, _admin) = behind_a_gateway(&ALL).await;
    let (status, headers, document) = gateway
        .call(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{document}");
    let content_type = headers[reqwest::header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "OpenAPI {version}");

    let rows = openapi::public_rows(&system::route_tables());
    let problems = openapi::disagreements(&document, &rows);
    assert!(problems.is_empty(), "{problems:#?}");
    for (method, path) in openapi::operations(&document) {
        assert!(path.starts_with("/api/"), "{method} {path}");
    }
    let problems = security_problems(&document, &rows);
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = schema_problems(&document);
    assert!(problems.is_empty(), "{problems:#?}");

    // What `scripts/validate-openapi` writes without running anything is what is served.
    let services = system::openapi_documents().unwrap();
    let built = api_gateway::public_document(&system::route_tables(), &services).unwrap();
    assert!(
        document == built,
        "the served document is not the one built offline"
    );

    let urls = system.urls();
    for table in system::route_tables() {
        let service = table.service;
        let url = format!("{}/openapi.json", urls[service]);
        let own: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        let rows = openapi::service_rows(table.routes);
        let mut problems = openapi::disagreements(&own, &rows);
        problems.extend(security_problems(&own, &rows));
        problems.extend(schema_problems(&own));
        assert!(problems.is_empty(), "{service}: {problems:#?}");
    }
    gateway.stop().await;
    system.stop().await;
}
