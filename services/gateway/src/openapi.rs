//! `GET /api/openapi.json` (and `GET /openapi.json` at the root, as every service answers
//! it): the public OpenAPI document. The gateway describes its own routes here and in the
//! modules that serve them; what the services' routes take and answer it reads from the
//! documents the services serve, so it keeps no copy of them and publishes what the
//! services running behind it say. The document is kept for a minute; one that cannot be
//! read from a service is a 502 (504 when it is late), never a document with a hole.

use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use platform::ApiError;
use platform::openapi::{Api, Operation};
use platform::routes::{ServiceTable, TableMismatch, Verb, gateway, operations};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::Upstreams;
use crate::ingest;
use crate::summary;

/// How long a document read from the services is served before it is read again.
const FRESH_FOR: Duration = Duration::from_secs(60);

/// The gateway's own routes described for its document, each against its row of
/// [`gateway::ROUTES`].
///
/// # Errors
/// When a row is not described, or a description has no row.
pub fn own_document() -> Result<Value, TableMismatch> {
    Api::gateway(gateway::ROUTES)
        .on(Verb::Get, gateway::SUMMARY.path, summary::described())
        .on(Verb::Post, gateway::EVENTS.path, ingest::described())
        .on(Verb::Get, gateway::OPENAPI.path, described())
        .finish()
}

/// The public document of the services of `tables`, from their own documents, by service
/// name.
///
/// # Errors
/// As [`own_document`].
pub fn public_document(
    tables: &[ServiceTable],
    services: &[(&str, Value)],
) -> Result<Value, TableMismatch> {
    Ok(platform::openapi::public_document(
        &own_document()?,
        tables,
        services,
    ))
}

fn described() -> Operation {
    Operation::new("This document: every route the gateway publishes")
        .reply_object(StatusCode::OK, "An OpenAPI 3.1 document.")
        .refusal(
            StatusCode::BAD_GATEWAY,
            "A service's own document could not be read.",
        )
        .refusal(
            StatusCode::GATEWAY_TIMEOUT,
            "A service's own document did not come in time.",
        )
}

/// The gateway's own document, and the public one while it is fresh.
pub(crate) struct Documents {
    own: Value,
    public: Mutex<Option<(Instant, Value)>>,
}

impl Documents {
    /// # Errors
    /// As [`own_document`].
    pub(crate) fn new() -> Result<Self, TableMismatch> {
        Ok(Self {
            own: own_document()?,
            public: Mutex::new(None),
        })
    }

    /// The public document of the services of `tables`: the one kept if it is fresh, else
    /// one made from the services' documents read now (one reading at a time, which the
    /// others wait for).
    pub(crate) async fn public(&self, upstreams: &Upstreams, tables: &[ServiceTable]) -> Response {
        let mut kept = self.public.lock().await;
        if let Some((read_at, document)) = kept.as_ref()
            && read_at.elapsed() < FRESH_FOR
        {
            return Json(document.clone()).into_response();
        }
        match read_all(upstreams, tables).await {
            Ok(services) => {
                let document = platform::openapi::public_document(&self.own, tables, &services);
                *kept = Some((Instant::now(), document.clone()));
                Json(document).into_response()
            }
            Err(refusal) => refusal,
        }
    }
}

/// Every service's document, each read from one of its instances.
async fn read_all(
    upstreams: &Upstreams,
    tables: &[ServiceTable],
) -> Result<Vec<(&'static str, Value)>, Response> {
    let reads = tables.iter().map(|table| read(upstreams, table.service));
    join_all(reads).await.into_iter().collect()
}

async fn read(
    upstreams: &Upstreams,
    service: &'static str,
) -> Result<(&'static str, Value), Response> {
    let url = format!("{}{}", upstreams.url(service), operations::OPENAPI.path);
    let answer = upstreams
        .client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    let document = match answer {
        Ok(answer) => answer.json::<Value>().await,
        Err(error) => Err(error),
    };
    document
        .map(|document| (service, document))
        .map_err(|error| unreadable(service, &error))
}

/// 504 when the service took too long, 502 otherwise.
fn unreadable(service: &str, error: &reqwest::Error) -> Response {
    let status = if error.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    tracing::warn!(service, %error, "Cannot read a service's OpenAPI document.");
    ApiError::new(
        status,
        format!("the {service} service's API description cannot be read; try again shortly"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use platform::openapi::{disagreements, public_rows};

    use super::*;

    #[test]
    fn every_own_row_is_described_and_the_public_document_has_every_published_row() {
        let public = public_document(&[], &[]).unwrap();
        let problems = disagreements(&public, &public_rows(&[]));
        assert!(problems.is_empty(), "{problems:#?}");
        let ingest = &public["paths"]["/api/events"]["post"];
        let body = &ingest["requestBody"]["content"]["application/json"]["schema"];
        let types: Vec<(&str, &str)> = body["anyOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|variant| {
                let properties = &variant["properties"];
                (
                    properties["type"]["const"].as_str().unwrap_or_default(),
                    properties["dataschema"]["enum"][1]
                        .as_str()
                        .unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                ("product.created", "events-schema/product.created/v1"),
                ("product.updated", "events-schema/product.updated/v1"),
                ("product.created", "events-schema/product.created/v2"),
                ("product.updated", "events-schema/product.updated/v2"),
            ],
            "{body}"
        );
        for status in ["202", "400", "401", "403", "413", "422", "429"] {
            assert!(ingest["responses"].get(status).is_some(), "no {status}");
        }
    }
}
