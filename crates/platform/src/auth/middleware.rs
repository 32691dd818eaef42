//! The axum layers that turn an `Authorization: Bearer` header into a [`Caller`] in the
//! request's extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AuthError, Verifier};
use crate::ApiError;

/// Lets a request through only with a valid token.
pub async fn require_token(
    State(verifier): State<Arc<Verifier>>,
    request: Request,
    next: Next,
) -> Response {
    authenticate(&verifier, request, next, true).await
}

/// Lets every request through, with its caller when it carries a token; a token that is
/// present but invalid is still refused (a client that meant to authenticate should know).
pub async fn accept_token(
    State(verifier): State<Arc<Verifier>>,
    request: Request,
    next: Next,
) -> Response {
    authenticate(&verifier, request, next, false).await
}

async fn authenticate(
    verifier: &Verifier,
    mut request: Request,
    next: Next,
    required: bool,
) -> Response {
    let token = match bearer_token(request.headers()) {
        Ok(Some(token)) => token,
        Ok(None) if !required => return next.run(request).await,
        Ok(None) => return refusal(&AuthError::Missing),
        Err(error) => return refusal(&error),
    };
    match verifier.verify(&token).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => refusal(&error),
    }
}

/// The token of an `Authorization: Bearer` header, if there is such a header.
///
/// # Errors
/// When the header is there but is not `Bearer <token>`.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| AuthError::Malformed("the Authorization header is not text".to_owned()))?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed(
            "the Authorization header is not `Bearer <token>`".to_owned(),
        ));
    }
    Ok(Some(token.trim().to_owned()))
}

/// The answer to a refused token: 401 with `WWW-Authenticate`, or 503 with `Retry-After`
/// when the keys to check it cannot be had.
pub fn refusal(error: &AuthError) -> Response {
    if matches!(error, AuthError::KeysUnavailable) {
        let mut response =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    tracing::debug!(%error, "Refused a request's token.");
    let mut response = ApiError::unauthorized(error.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"conveyor\""),
    );
    response
}
