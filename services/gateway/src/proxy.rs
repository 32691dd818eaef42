//! Sending a request on to its service and its answer back, headers and all but the ones
//! that belong to one connection.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::ApiError;

use crate::Upstreams;

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

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Sends `request` to `service` at `path_and_query` and answers with what it answered.
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
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    // The service continues the gateway's span, itself a child of the caller's.
    let trace = platform::trace_headers();
    if !trace.is_empty() {
        headers.remove("traceparent");
        headers.remove("tracestate");
        headers.extend(trace);
    }
    if let Ok(address) = client_address.to_string().parse() {
        headers.append(HeaderName::from_static("x-forwarded-for"), address);
    }
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
