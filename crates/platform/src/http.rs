//! JSON errors for HTTP APIs: every error a client sees is `{"error": "..."}` with a status
//! that says whose fault it is.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::db_refusal::refused_data_in;

/// An HTTP error with a message meant for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

/// Unexpected failures are logged with their cause and reported without internals. Data
/// the database refuses (a character it cannot store, a text too long for an index, a
/// number out of range: see [`crate::db_refusal::refused_data`]) fails the same way every
/// time, so it is the request's fault, a 422, never a 503 that a client would retry forever.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        if let Some(code) = refused_data_in(&error) {
            tracing::warn!(error = format!("{error:#}"), sqlstate = %code, "The database refused a request's data.");
            return Self::unprocessable(format!(
                "the database refused the request's data (SQLSTATE {code}): a text too long or with a character that cannot be stored, or a value out of range; change the request rather than retrying it"
            ));
        }
        tracing::error!(error = format!("{error:#}"), "Request failed.");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service could not complete the request; try again shortly",
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        anyhow::Error::from(error).into()
    }
}

impl From<conveyor::OutboxError> for ApiError {
    fn from(error: conveyor::OutboxError) -> Self {
        match error {
            conveyor::OutboxError::Contract { .. } => Self::unprocessable(error.to_string()),
            conveyor::OutboxError::Database { .. } | conveyor::OutboxError::Cancel { .. } => {
                anyhow::Error::from(error).into()
            }
        }
    }
}

/// The body of every refusal, and the schema the OpenAPI documents give it.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub(crate) struct ErrorBody {
    /// What is wrong and whose fault it is, in a sentence for a person to read.
    pub(crate) error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.message,
        });
        (self.status, body).into_response()
    }
}

/// A JSON request body whose rejection (bad JSON, a missing or mistyped field) is a JSON
/// error saying what is wrong, like every other error.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// Parses an id from a path or query, naming what it should have been.
///
/// # Errors
/// A 404 naming the id: a malformed id cannot name anything that exists.
pub fn parse_uuid(text: &str, what: &str) -> ApiResult<Uuid> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} {text:?}: ids are UUIDs")))
}
