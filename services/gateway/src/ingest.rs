//! `POST /api/events`: events from producing systems outside AMQP. A client with the
//! `events:publish` scope sends a CloudEvent of a type an admin granted it; the gateway checks
//! the whole event against the event contract (the envelope against the envelope's schema,
//! the data against its type's, integers as JSON integers within i64, money under its
//! ceilings) and refuses it with a 422 naming each field at fault, so nothing a consumer
//! would refuse is published. It publishes the rest and answers 202 only once the broker has
//! confirmed it. An event id accepted before is answered 200 and not published again.
//!
//! Ids are remembered in the gateway's own database after the confirm. A crash between the
//! confirm and that record, or two requests with one id racing, can publish an event twice;
//! consumers' inboxes drop the repeat, so it takes effect once either way.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use conveyor::{AmqpConfig, Envelope, Names, PublishError, Publisher, Shutdown};
use events_schema::{ENVELOPE_SCHEMA, EventViolations, SCHEMAS, SchemaFile, embedded_schema};
use platform::openapi::Operation;
use platform::{ApiError, Caller, Scope};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::OnceCell;

/// The largest event accepted; bigger ones are refused before they are parsed.
pub(crate) const MAX_EVENT_BYTES: usize = 256 * 1024;

/// What `POST /api/events` takes and answers, for the gateway's OpenAPI document.
pub(crate) fn described() -> Operation {
    Operation::new("Publishes an event from a producing system")
        .describe(
            "A CloudEvent of a type an admin granted the client, checked whole against the event contract (the envelope, the data, integers as JSON integers within i64, money under its ceilings) before anything is published; answered once the broker has confirmed it.",
        )
        .json_body_schema(event_schema())
        .reply_object(
            StatusCode::ACCEPTED,
            "Published: `{\"accepted\": \"now\", \"id\": …, \"source\": \"/clients/<client id>\"}`: the event went out with the source its token names, whatever the body said.",
        )
        .reply_object(
            StatusCode::OK,
            "This event id was accepted before, and is not published again.",
        )
        .refusal(
            StatusCode::FORBIDDEN,
            "The client may not publish events, or not of this type (an admin is granted none).",
        )
        .refusal(StatusCode::PAYLOAD_TOO_LARGE, "The event is over 256 KiB.")
        .refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The body is not JSON, or the event breaks the contract: `violations` names each field and the rule.",
        )
        .refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The broker or the gateway's database is unavailable: nothing was published.",
        )
}

/// The events a producing system may send: the contract's envelope, one variant per type
/// and version it may send, each with that version's data schema and its money ceilings.
fn event_schema() -> Value {
    let variants: Vec<Value> = SCHEMAS
        .iter()
        .filter(|file| events_schema::publishers::is_ingestible(file.event_type))
        .map(event_variant)
        .collect();
    // `anyOf`, not `oneOf`: a v1 event may leave `dataschema` out, so no one property tells
    // v1 from v2 of a type for a linter, though no event matches both (v2 requires it).
    json!({ "anyOf": variants })
}

fn event_variant(file: &SchemaFile) -> Value {
    let mut event = embedded_schema(ENVELOPE_SCHEMA);
    if let Some(envelope) = event.as_object_mut() {
        envelope.remove("examples");
    }
    event["properties"]["type"] = json!({ "const": file.event_type });
    event["properties"]["dataschema"] =
        json!({ "enum": events_schema::dataschema_forms(file.event_type, file.version) });
    // Without `dataschema` an event is read as version 1.
    if file.version > 1
        && let Some(required) = event["required"].as_array_mut()
    {
        required.push(json!("dataschema"));
    }
    let mut data = embedded_schema(file.text);
    let ceilings = events_schema::money::CEILINGS
        .iter()
        .filter(|ceiling| ceiling.event_type == file.event_type && ceiling.version == file.version);
    for ceiling in ceilings {
        if let Some(field) = data["properties"].get_mut(ceiling.field) {
            field["maximum"] = json!(ceiling.max);
        }
    }
    event["properties"]["data"] = data;
    event
}

/// The `source` of what a producing system sends: `/clients/<client id>`, from its token's
/// subject (`client:<client id>`).
fn client_source(caller: &Caller) -> Option<String> {
    caller
        .subject()
        .strip_prefix("client:")
        .map(|client| format!("/clients/{client}"))
}

pub(crate) struct Ingest {
    pool: PgPool,
    amqp: AmqpConfig,
    /// The events exchange it publishes to is `names.events_exchange()`.
    names: Names,
    /// Connected at the first event, so the gateway starts without the broker.
    publisher: OnceCell<Publisher>,
    retention: Duration,
}

impl Ingest {
    pub(crate) fn new(pool: PgPool, amqp: AmqpConfig, names: Names, retention: Duration) -> Self {
        Self {
            pool,
            amqp,
            names,
            publisher: OnceCell::new(),
            retention,
        }
    }

    async fn publisher(&self) -> Result<&Publisher, ApiError> {
        self.publisher
            .get_or_try_init(|| async {
                let contract = events_schema::EventContract::shared()?;
                let publisher = Publisher::connect(self.amqp.clone(), self.names.clone()).await?;
                anyhow::Ok(publisher.with_contract(contract))
            })
            .await
            .map_err(ApiError::from)
    }

    /// Takes one event from `caller`.
    pub(crate) async fn accept(&self, caller: &Caller, body: &[u8]) -> Response {
        match self.try_accept(caller, body).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn try_accept(&self, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
        caller.require(Scope::EVENTS_PUBLISH)?;
        let event: Value = serde_json::from_slice(body)
            .map_err(|error| ApiError::unprocessable(format!("the body is not JSON: {error}")))?;
        // A type the client may not send is refused before the contract is looked at.
        if let Some(event_type) = event.get("type").and_then(Value::as_str)
            && !caller.may_publish(event_type)
        {
            return Err(not_granted(event_type));
        }
        // The whole event, envelope and data, before anything reads it.
        let contract = events_schema::EventContract::shared().map_err(anyhow::Error::from)?;
        if let Err(refusal) = contract.validate_event(&event) {
            return Ok(refused(&refusal));
        }
        let mut envelope = Envelope::from_bytes(body).map_err(|error| {
            ApiError::unprocessable(format!("the body is not a CloudEvent envelope: {error}"))
        })?;
        // Who sent it is what the token says, not what the body claims.
        if let Some(source) = client_source(caller) {
            envelope.source = source;
        }
        if !caller.may_publish(&envelope.event_type) {
            return Err(not_granted(&envelope.event_type));
        }
        let seen: Option<bool> =
            sqlx::query_scalar("SELECT true FROM ingested WHERE event_id = $1")
                .bind(envelope.id)
                .fetch_optional(&self.pool)
                .await?;
        if seen.is_some() {
            let body = json!({ "id": envelope.id, "accepted": "before" });
            return Ok((StatusCode::OK, Json(body)).into_response());
        }
        self.publisher()
            .await?
            .publish(&envelope)
            .await
            .map_err(|error| match error {
                PublishError::Contract { violation, .. } => {
                    ApiError::unprocessable(violation.to_string())
                }
                other => anyhow::Error::from(other).into(),
            })?;
        sqlx::query(
            "INSERT INTO ingested (event_id, client, event_type) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(envelope.id)
        .bind(caller.subject())
        .bind(&envelope.event_type)
        .execute(&self.pool)
        .await?;
        let body = json!({ "id": envelope.id, "accepted": "now", "source": envelope.source });
        Ok((StatusCode::ACCEPTED, Json(body)).into_response())
    }

    /// Forgets ids older than the retention (the consumers' inbox keeps them as long), once
    /// an hour until `shutdown` fires.
    pub(crate) async fn purge_old(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            let purged = sqlx::query(
                "DELETE FROM ingested WHERE accepted_at < now() - make_interval(secs => $1)",
            )
            .bind(self.retention.as_secs_f64())
            .execute(&self.pool)
            .await;
            if let Err(error) = purged {
                tracing::warn!(%error, "Cannot forget old ingested event ids; trying again later.");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                () = shutdown.fired() => return,
            }
        }
    }
}

fn not_granted(event_type: &str) -> ApiError {
    ApiError::forbidden(format!(
        "this client may not publish {event_type} events; an admin grants event types with POST /auth/clients"
    ))
}

/// 422 naming every field at fault and the rule it breaks, as `error` (one sentence) and as
/// `violations` (`[{"field": "data.price_cents", "rule": "…"}]`).
fn refused(refusal: &EventViolations) -> Response {
    let violations: Vec<Value> = refusal
        .violations
        .iter()
        .map(|violation| json!({ "field": violation.field, "rule": violation.rule }))
        .collect();
    let body = json!({ "error": refusal.to_string(), "violations": violations });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}
