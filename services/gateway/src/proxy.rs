//! Sending a request on to its service and its answer back, headers and all but the ones
//! that belong to one connection, and those that say who the client is.
//!
//! Who the client is, the gateway says itself: it drops every `Forwarded`,
//! `X-Forwarded-For` and `X-Real-IP` a client sent (which anyone can write) and sets
//! `X-Forwarded-For` to the address of the connection it took the request from. With
//! `GATEWAY_FORWARD_SECRET` set, it adds `X-Conveyor-Gateway: <secret>` to what it sends
//! users (and to no other service), which users checks before it believes that address:
//! users counts failed sign-ins per login and client address, and without the proof anyone
//! who reaches users directly could claim any address. A client's own
//! `X-Conveyor-Gateway` is dropped too.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ApiError;

use crate::Upstreams;

/// The variable holding the secret the gateway and users share.
pub(crate) const FORWARD_SECRET_VARIABLE: &str = "GATEWAY_FORWARD_SECRET";

/// The header that proves to users that a request comes from the gateway (users' name
/// for it is the same).
const GATEWAY_HEADER: &str = "x-conveyor-gateway";

/// The one service that reads [`GATEWAY_HEADER`], and the only one sent it.
const TRUSTING_SERVICE: &str = "users";

/// The shortest secret accepted, as users accepts it.
const MIN_SECRET_CHARS: usize = 32;

/// Headers that say who the client is: never taken from a client, never passed back.
const CLIENT_IDENTITY: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    GATEWAY_HEADER,
];

/// `GATEWAY_FORWARD_SECRET` cannot be used; its value is never shown.
#[derive(Debug, thiserror::Error)]
#[error(
    "GATEWAY_FORWARD_SECRET must have at least {MIN_SECRET_CHARS} characters, all visible ASCII (it travels in a header), and be users' too"
)]
pub(crate) struct ForwardSecretError;

/// The value of `X-Conveyor-Gateway` for `secret`, marked sensitive so that no debug
/// output of the headers shows it.
///
/// # Errors
/// When `secret` is too short to be hard to guess, or could not travel in a header.
pub(crate) fn forward_mark(secret: &str) -> Result<HeaderValue, ForwardSecretError> {
    if secret.len() < MIN_SECRET_CHARS || !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ForwardSecretError);
    }
    let mut value = HeaderValue::from_str(secret).map_err(|_| ForwardSecretError)?;
    value.set_sensitive(true);
    Ok(value)
}

/// `GATEWAY_FORWARD_SECRET` as the environment sets it; unset or empty is none.
pub(crate) fn forward_secret_from_env() -> Option<String> {
    std::env::var(FORWARD_SECRET_VARIABLE)
        .ok()
        .filter(|secret| !secret.is_empty())
}

/// Bodies larger than this are refused (413) before anything is sent on.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Headers of one hop (RFC 9110 §7.6.1), never passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Copies `from` into `to` but the headers of one hop and those that say who the client is
/// ([`CLIENT_IDENTITY`]): only the gateway says that, in [`identify_client`].
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(name)
            && name != header::HOST
            && name != header::CONTENT_LENGTH
            && !CLIENT_IDENTITY.contains(&name.as_str())
        {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Says who the client is, and (with a secret) that the gateway says so: see the module's
/// documentation.
fn identify_client(
    headers: &mut HeaderMap,
    client_address: std::net::IpAddr,
    mark: Option<&HeaderValue>,
) {
    if let Ok(address) = HeaderValue::from_str(&client_address.to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), address);
    }
    if let Some(mark) = mark {
        headers.insert(HeaderName::from_static(GATEWAY_HEADER), mark.clone());
    }
}

/// Sends `request` to `service` at `path_and_query` and answers with what it answered.
///
/// `path_and_query` comes from a [`crate::path::NormalPath`], which no URL parser changes;
/// should the URL sent on still have another path than the one matched (a parser that
/// reads some spelling as `..` after all), the request is refused rather than sent.
pub(crate) async fn forward(
    upstreams: &Upstreams,
    service: &str,
    path_and_query: &str,
    client_address: std::net::IpAddr,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over {MAX_BODY_BYTES} bytes"),
            )
            .into_response();
        }
    };
    let url = format!("{}{path_and_query}", upstreams.url(service));
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path);
    if reqwest::Url::parse(&url).is_ok_and(|parsed| !parsed.path().ends_with(path)) {
        tracing::warn!(
            service,
            "A path would have changed on its way to the service."
        );
        return ApiError::bad_request(
            "the request path is refused: the path would change on its way to the service",
        )
        .into_response();
    }
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    // The service continues the gateway's span, itself a child of the caller's.
    let trace = platform::trace_headers();
    if !trace.is_empty() {
        headers.remove("traceparent");
        headers.remove("tracestate");
        headers.extend(trace);
    }
    // Only users reads the proof; the other services are not handed the secret.
    let mark = upstreams
        .forward_mark
        .as_ref()
        .filter(|_| service == TRUSTING_SERVICE);
    identify_client(&mut headers, client_address, mark);
    let sent = upstreams
        .client
        .request(parts.method, &url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) => relay(service, answer).await,
        Err(error) => unreachable(service, &error),
    }
}

async fn relay(service: &str, answer: reqwest::Response) -> Response {
    let status = answer.status();
    let mut headers = HeaderMap::new();
    copy_headers(answer.headers(), &mut headers);
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(error) => return unreachable(service, &error),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// 504 when the service took too long, 502 when it could not be reached.
fn unreachable(service: &str, error: &reqwest::Error) -> Response {
    let status = if error.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    tracing::warn!(service, %error, "An upstream did not answer.");
    ApiError::new(
        status,
        format!("the {service} service did not answer; try again shortly"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect()
    }

    #[test]
    fn a_clients_claims_of_who_it_is_are_replaced_by_the_gateways() {
        let mut sent = HeaderMap::new();
        for (name, value) in [
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
            ("x-real-ip", "203.0.113.7"),
            ("x-conveyor-gateway", "a guess"),
            ("authorization", "Bearer t"),
        ] {
            sent.append(name, HeaderValue::from_static(value));
        }
        let mut forwarded = HeaderMap::new();
        copy_headers(&sent, &mut forwarded);
        let mark = forward_mark(SECRET).unwrap();
        identify_client(&mut forwarded, [192, 0, 2, 1].into(), Some(&mark));
        assert_eq!(values(&forwarded, "x-forwarded-for"), ["192.0.2.1"]);
        assert_eq!(values(&forwarded, "x-conveyor-gateway"), [SECRET]);
        assert!(values(&forwarded, "forwarded").is_empty());
        assert!(values(&forwarded, "x-real-ip").is_empty());
        assert_eq!(values(&forwarded, "authorization"), ["Bearer t"]);
        assert!(!format!("{forwarded:?}").contains(SECRET));
        let mut unmarked = HeaderMap::new();
        copy_headers(&sent, &mut unmarked);
        identify_client(&mut unmarked, [192, 0, 2, 1].into(), None);
        assert!(unmarked.get("x-conveyor-gateway").is_none());
    }

    #[test]
    fn a_forward_secret_is_long_and_visible_ascii() {
        assert!(forward_mark("short").is_err());
        assert!(forward_mark(&format!("{SECRET} x")).is_err());
        assert!(forward_mark(&format!("{SECRET}\u{e9}")).is_err());
        assert!(forward_mark(SECRET).unwrap().is_sensitive());
    }
}
