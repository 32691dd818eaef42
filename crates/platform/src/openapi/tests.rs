use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::auth::Scope;
use crate::routes::{Access, Route, ServiceTable, Verb, gateway};

const PAYMENTS: &[Route] = &[
    Route::api(Verb::Get, "/payments", Access::Owner),
    Route::internal(Verb::Get, "/cache/users/{id}", Access::Scope(Scope::ADMIN)),
];

/// Two services' tables, each with a row the gateway does not publish.
const TABLES: &[ServiceTable] = &[
    ServiceTable {
        service: "orders",
        routes: &[
            Route::api(Verb::Post, "/orders", Access::Owner),
            Route::api(Verb::Get, "/orders/{id}", Access::Owner),
            Route::internal(Verb::Get, "/cache/users/{id}", Access::Scope(Scope::ADMIN)),
        ],
    },
    ServiceTable {
        service: "payments",
        routes: PAYMENTS,
    },
];

/// `table` with every row described as nothing but a summary.
fn barely(api: Api, table: &[Route]) -> Api {
    table.iter().fold(api, |api, row| {
        api.on(row.verb, row.path, Operation::new("A route"))
    })
}

fn service_document(service: &'static str, table: &'static [Route]) -> Value {
    barely(Api::new(service, table), table).finish().unwrap()
}

#[test]
fn a_service_document_has_every_row_and_the_runners_and_nothing_else() {
    for &ServiceTable { service, routes } in TABLES {
        let document = service_document(service, routes);
        let problems = disagreements(&document, &service_rows(routes));
        assert!(problems.is_empty(), "{service}: {problems:#?}");
        assert_eq!(document["openapi"], OPENAPI_VERSION);
    }
}

#[test]
fn a_row_without_a_description_or_a_description_without_a_row_fails() {
    let table = PAYMENTS;
    let missing = Api::new("payments", table)
        .on(Verb::Get, "/payments", Operation::new("Payments"))
        .finish()
        .unwrap_err();
    assert!(
        missing.to_string().contains("/cache/users/{id}"),
        "{missing}"
    );
    let extra = barely(Api::new("payments", table), table)
        .on(Verb::Delete, "/payments", Operation::new("No such route"))
        .finish()
        .unwrap_err();
    assert!(extra.to_string().contains("DELETE /payments"), "{extra}");
    let twice = barely(Api::new("payments", table), table)
        .on(Verb::Get, "/payments", Operation::new("Again"))
        .finish()
        .unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
}

#[test]
fn the_public_document_has_every_published_row_under_api_and_nothing_else() {
    let services: Vec<(&str, Value)> = TABLES
        .iter()
        .map(|table| (table.service, service_document(table.service, table.routes)))
        .collect();
    let own = barely(Api::gateway(gateway::ROUTES), gateway::ROUTES)
        .finish()
        .unwrap();
    let public = public_document(&own, TABLES, &services);
    let problems = disagreements(&public, &public_rows(TABLES));
    assert!(problems.is_empty(), "{problems:#?}");
    for (_, path) in operations(&public) {
        assert!(path.starts_with("/api/"), "{path}");
    }
    // Internal rows and the runner's stay on the services' own ports.
    assert!(public["paths"].get("/api/cache/users/{id}").is_none());
    assert!(public["paths"].get("/api/healthz").is_none());
    // What the gateway answers in front of a service is on what it sends on.
    let place = &public["paths"]["/api/orders"]["post"]["responses"];
    for status in ["400", "401", "429", "502", "503", "504"] {
        assert!(
            place.get(status).is_some(),
            "POST /api/orders has no {status}"
        );
    }
}

#[test]
fn a_missing_service_document_leaves_its_rows_described_by_their_rows() {
    let own = barely(Api::gateway(gateway::ROUTES), gateway::ROUTES)
        .finish()
        .unwrap();
    let public = public_document(&own, TABLES, &[]);
    assert!(disagreements(&public, &public_rows(TABLES)).is_empty());
}

#[test]
fn security_follows_the_rows_access() {
    assert_eq!(security(Access::Open), json!([{}, { "bearer": [] }]));
    assert_eq!(security(Access::Owner), json!([{ "bearer": [] }]));
    assert_eq!(
        security(Access::Scope("inventory:write")),
        json!([{ "bearer": ["inventory:write"] }])
    );
}

#[test]
fn what_is_read_and_what_stands_in_front_is_described() {
    const TABLE: &[Route] = &[Route::api(
        Verb::Post,
        "/things/{id}",
        Access::Scope("admin"),
    )];
    let document = Api::new("things", TABLE)
        .on(
            Verb::Post,
            "/things/{id}",
            Operation::new("Makes a thing")
                .param(Param::uuid("id", "The thing."))
                .json_body::<crate::service::Readiness>()
                .refusal(StatusCode::CONFLICT, "The thing exists."),
        )
        .finish()
        .unwrap();
    let thing = &document["paths"]["/things/{id}"]["post"];
    let body = &thing["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["type"], "object", "{body}");
    assert_eq!(
        body["required"],
        json!(["ready", "database", "broker"]),
        "{body}"
    );
    assert_eq!(thing["parameters"][0]["schema"]["format"], "uuid");
    for status in ["401", "403", "404", "409", "413", "415", "422", "503"] {
        assert!(
            thing["responses"].get(status).is_some(),
            "no {status}: {thing}"
        );
    }
    let error = &thing["responses"]["409"]["content"]["application/json"]["schema"];
    assert_eq!(error["required"], json!(["error"]), "{error}");
    let ready = &document["paths"]["/readyz"]["get"]["responses"]["503"];
    assert!(ready.get("content").is_some(), "{ready}");
}
