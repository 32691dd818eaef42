//! A document's parts made from rows and their descriptions: each operation (its id, tag,
//! security from the row's access, parameters, body and answers) and the frame around the
//! paths.

use serde_json::{Map, Value, json};

use super::describe::{Body, Operation, Param};
use super::responses::{Front, responses};
use super::schema::{Generators, SchemaFn, Source};
use crate::routes::{Access, Route, Verb};

/// The OpenAPI version of every document.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// The name of the one security scheme: a bearer token from users.
pub const BEARER: &str = "bearer";

/// The operation of `row`, as `operation` describes it, tagged with `tag`.
pub(crate) fn operation(
    tag: &str,
    row: &Route,
    operation: &Operation,
    front: Front,
    generators: &mut Generators,
) -> Value {
    let mut described = json!({
        "operationId": operation_id(row.verb, row.path),
        "summary": operation.summary,
        "tags": [tag],
        "security": security(row.access),
        "x-conveyor-access": access_name(row.access),
        "parameters": parameters(row, operation, generators),
        "responses": responses(row, operation, front, generators),
    });
    if let Some(description) = operation.description {
        described["description"] = Value::String(description.to_owned());
    }
    if let Some(body) = &operation.body {
        described["requestBody"] = request_body(body, generators);
    }
    described
}

/// Who may call a route, as OpenAPI says it: an open route takes a token or none; any
/// other needs one, with the scope its row names (OpenAPI 3.1 lets a bearer requirement
/// list the roles it needs).
pub fn security(access: Access) -> Value {
    match access {
        Access::Open => json!([{}, { BEARER: [] }]),
        Access::AnyCaller | Access::Owner => json!([{ BEARER: [] }]),
        Access::Scope(scope) | Access::Granted(scope) => json!([{ BEARER: [scope] }]),
    }
}

/// A row's access in words, for readers of the document (`x-conveyor-access`).
fn access_name(access: Access) -> String {
    match access {
        Access::Open => "open".to_owned(),
        Access::AnyCaller => "any caller".to_owned(),
        Access::Owner => "owner or admin".to_owned(),
        Access::Scope(scope) => format!("scope {scope}"),
        Access::Granted(scope) => format!("scope {scope}, for what an admin granted"),
    }
}

/// A unique, URL-safe id of the operation: its method and path, as `get_orders_id`.
pub(crate) fn operation_id(verb: Verb, path: &str) -> String {
    let mut id = verb.as_str().to_ascii_lowercase();
    for word in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !word.is_empty() {
            id.push('_');
            id.push_str(word);
        }
    }
    id
}

/// The path's parameters (one per `{name}` of the template, described by the operation or
/// as any text), its headers, and its query's fields.
fn parameters(row: &Route, operation: &Operation, generators: &mut Generators) -> Vec<Value> {
    let mut parameters: Vec<Value> = template_names(row.path)
        .map(|name| {
            operation
                .params
                .iter()
                .find(|param| param.location == "path" && param.name == name)
                .map_or_else(|| any_text(name), parameter)
        })
        .collect();
    parameters.extend(
        operation
            .params
            .iter()
            .filter(|param| param.location != "path")
            .map(parameter),
    );
    if let Some(query) = operation.query {
        parameters.extend(query_parameters(query, generators));
    }
    parameters
}

/// The `{name}`s of a path template, in order.
pub(crate) fn template_names(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn parameter(param: &Param) -> Value {
    json!({
        "name": param.name,
        "in": param.location,
        "required": param.location == "path",
        "description": param.description,
        "schema": param.schema,
    })
}

/// A path parameter no operation described: any one segment.
fn any_text(name: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "schema": { "type": "string", "minLength": 1 },
    })
}

/// Each field of the query's type as a parameter: required as the type requires it, its
/// schema the field's (without the `null` a missing field reads as: a query has no null).
fn query_parameters(query: SchemaFn, generators: &mut Generators) -> Vec<Value> {
    let schema = generators.request(&Source::Derived(query));
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(fields) = schema["properties"].as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .map(|(name, field)| {
            let mut field = field.clone();
            let description = field
                .as_object_mut()
                .and_then(|field| field.remove("description"));
            without_null(&mut field);
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": field,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        })
        .collect()
}

/// `schema` without `null` among its types.
fn without_null(schema: &mut Value) {
    let Some(types) = schema["type"].as_array() else {
        return;
    };
    let kept: Vec<Value> = types
        .iter()
        .filter(|kind| kind.as_str() != Some("null"))
        .cloned()
        .collect();
    schema["type"] = match <[Value; 1]>::try_from(kept) {
        Ok([only]) => only,
        Err(kept) => Value::Array(kept),
    };
}

fn request_body(body: &Body, generators: &mut Generators) -> Value {
    let schema = generators.request(&body.schema);
    let content: Map<String, Value> = body
        .media
        .iter()
        .map(|media| ((*media).to_owned(), json!({ "schema": schema })))
        .collect();
    json!({ "required": true, "content": content })
}

/// A whole document around `paths`.
pub(crate) fn frame(
    title: &str,
    description: &str,
    tags: Value,
    paths: Map<String, Value>,
) -> Value {
    json!({
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": description,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "servers": [{ "url": "/", "description": "Where this document is served." }],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An RS256 JWT that users issues at `POST /auth/token` (`/api/auth/token` through the gateway), valid for an hour. Its `scope` claim says what it may do: `customer`, `admin`, or a producing system's scopes.",
                },
            },
        },
    })
}

/// Puts `operation` at `path` and `verb` of `paths`, beside the path's other methods.
pub(crate) fn insert(paths: &mut Map<String, Value>, path: String, verb: Verb, operation: Value) {
    let item = paths.entry(path).or_insert_with(|| json!({}));
    item[verb.as_str().to_ascii_lowercase()] = operation;
}
