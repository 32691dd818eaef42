//! The answers of an operation: the ones its handler gives (its [`Operation`]'s replies), and
//! the ones the layers in front of every handler give, added from the route's row and from
//! what the route reads, so that no refusal a client can meet goes undocumented.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::describe::{Content, Operation, Reply};
use super::schema::{Generators, SchemaFn, Source, derived};
use crate::http::ErrorBody;
use crate::routes::{Access, Route};

/// What stands in front of a route's handler, and so what every route behind it may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// A service's router: the token check (401), the row's scope (403), the HTTP slots and
    /// the keys that check tokens (503), and axum's extractors (a malformed body or query).
    Service,
    /// The gateway's own routes: its path check (400), token check (401, or 503 while the
    /// keys cannot be fetched), the row's scope (403) and rate limit (429).
    Gateway,
    /// The runner's health, readiness, metrics and document: nothing.
    Runner,
}

/// Every answer of `operation` at `row`, by status.
pub(crate) fn responses(
    row: &Route,
    operation: &Operation,
    front: Front,
    generators: &mut Generators,
) -> Map<String, Value> {
    let mut responses = Map::new();
    for reply in &operation.replies {
        responses.insert(status_key(reply.status), answer(reply, generators));
    }
    for (status, response) in in_front(row, operation, front) {
        add(&mut responses, status, response);
    }
    responses
}

/// What the layers in front of the handler may answer.
fn in_front(row: &Route, operation: &Operation, front: Front) -> Vec<(StatusCode, Value)> {
    if front == Front::Runner {
        return Vec::new();
    }
    let mut answers = vec![(StatusCode::UNAUTHORIZED, unauthorized(row.access))];
    if row.access.scope().is_some() {
        answers.push((
            StatusCode::FORBIDDEN,
            error("The token does not grant the scope this route needs (see `security`)."),
        ));
    }
    if row.path.contains('{') {
        answers.push((
            StatusCode::NOT_FOUND,
            error("Nothing has this id: a malformed one names nothing either."),
        ));
    }
    match front {
        Front::Service => answers.extend(before_a_service(operation)),
        Front::Gateway => answers.extend(before_the_gateway()),
        Front::Runner => {}
    }
    answers
}

/// A service's own refusals before its handler runs.
fn before_a_service(operation: &Operation) -> Vec<(StatusCode, Value)> {
    let mut answers = vec![(
        StatusCode::SERVICE_UNAVAILABLE,
        retry_later(error(
            "The service is busy, its database is unavailable, or the keys that check tokens cannot be fetched: the same request may pass later.",
        )),
    )];
    if operation.body.is_some() {
        answers.extend([
            (
                StatusCode::BAD_REQUEST,
                error("The body is not well-formed (JSON, or a form)."),
            ),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                error("The body is larger than the service reads."),
            ),
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error("The body is not sent as one of the media types of `requestBody`."),
            ),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                error(
                    "A field is missing, of another type, or breaks its rule; the message names it.",
                ),
            ),
        ]);
    }
    if operation.query.is_some() {
        answers.push((StatusCode::BAD_REQUEST, bad_query()));
    }
    answers
}

/// The gateway's refusals before its own handlers run.
fn before_the_gateway() -> Vec<(StatusCode, Value)> {
    vec![
        (StatusCode::BAD_REQUEST, path_refused()),
        (StatusCode::TOO_MANY_REQUESTS, too_many()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            retry_later(error("The keys that check tokens cannot be fetched now.")),
        ),
    ]
}

/// The gateway's 400 for a path not in its one normal form.
pub(crate) fn path_refused() -> Value {
    error(
        "The request path is not in its one normal form (a dot segment, an empty segment, an encoded slash, a double encoding, a control character…): it is refused before anything reads it.",
    )
}

/// The gateway's 429.
pub(crate) fn too_many() -> Value {
    retry_later(error(
        "This client sent more requests of this route's class than its rate allows.",
    ))
}

fn unauthorized(access: Access) -> Value {
    let description = if access == Access::Open {
        "A token was sent and is not valid: the route needs none, but one that is sent must be valid."
    } else {
        "The bearer token is missing, forged, expired or otherwise not valid."
    };
    let mut response = error(description);
    response["headers"] = json!({
        "WWW-Authenticate": {
            "description": "`Bearer realm=\"conveyor\"`.",
            "schema": { "type": "string" },
        },
    });
    response
}

/// A malformed query: axum's own refusal is plain text, the handler's JSON.
fn bad_query() -> Value {
    let mut response = error("A query parameter is not of its type, or not one of its values.");
    response["content"]["text/plain"] = json!({ "schema": { "type": "string" } });
    response
}

/// `response` with the `Retry-After` it may carry.
fn retry_later(mut response: Value) -> Value {
    response["headers"] = json!({
        "Retry-After": {
            "description": "Whole seconds to wait before trying again.",
            "schema": { "type": "integer", "minimum": 1 },
        },
    });
    response
}

/// A refusal: the JSON error every refusal is, `{"error": "…"}` (some add fields, such as
/// the event ingest's `violations`).
pub(crate) fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": error_schema() } },
    })
}

/// The schema of [`crate::ApiError`]'s body, derived from the type it is written with.
pub(crate) fn error_schema() -> Value {
    let schema: SchemaFn = derived::<ErrorBody>;
    Generators::new().answer(&Source::Derived(schema))
}

fn answer(reply: &Reply, generators: &mut Generators) -> Value {
    match &reply.content {
        Content::Error => error(reply.description),
        Content::Text => json!({
            "description": reply.description,
            "content": { "text/plain": { "schema": { "type": "string" } } },
        }),
        Content::Json(source) => json!({
            "description": reply.description,
            "content": { "application/json": { "schema": generators.answer(source) } },
        }),
    }
}

/// Adds `response` for `status`; where the operation already has an answer for it (its own
/// words for the same refusal), keeps that one, naming the other cause too, and adds the
/// other's media types it lacks (a refusal made before the handler, such as a query string
/// that does not parse, answers in its own content type).
pub(crate) fn add(responses: &mut Map<String, Value>, status: StatusCode, response: Value) {
    let key = status_key(status);
    match responses.get_mut(&key) {
        None => {
            responses.insert(key, response);
        }
        Some(existing) => {
            let theirs = response["description"].as_str().unwrap_or_default();
            let ours = existing["description"].as_str().unwrap_or_default();
            if !ours.contains(theirs) {
                existing["description"] = Value::String(format!("{ours} Or: {theirs}"));
            }
            if let Some(their_content) = response.get("content").and_then(Value::as_object) {
                let content = existing.as_object_mut().map(|existing| {
                    existing
                        .entry("content")
                        .or_insert_with(|| Value::Object(Map::new()))
                });
                if let Some(Value::Object(ours)) = content {
                    for (media_type, schema) in their_content {
                        ours.entry(media_type.clone())
                            .or_insert_with(|| schema.clone());
                    }
                }
            }
        }
    }
}

fn status_key(status: StatusCode) -> String {
    status.as_u16().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Found by `scripts/check-api`: payments' own 400 (JSON) hid the text/plain 400 a query
    /// string that does not parse gets, so the document contradicted the answer.
    #[test]
    fn a_second_answer_for_a_status_adds_its_cause_and_its_media_types() {
        let mut responses = Map::new();
        let json_body = json!({ "schema": { "type": "object" } });
        add(
            &mut responses,
            StatusCode::BAD_REQUEST,
            json!({ "description": "No `order_id`.", "content": { "application/json": json_body } }),
        );
        add(
            &mut responses,
            StatusCode::BAD_REQUEST,
            json!({ "description": "A query parameter is not of its type.",
                    "content": { "text/plain": { "schema": { "type": "string" } } } }),
        );

        let answer = &responses["400"];
        assert_eq!(
            answer["description"],
            "No `order_id`. Or: A query parameter is not of its type."
        );
        assert_eq!(answer["content"]["application/json"], json_body);
        assert_eq!(answer["content"]["text/plain"]["schema"]["type"], "string");
    }
}
