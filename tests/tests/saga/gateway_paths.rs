//! Paths through the gateway that another parser could read as a different path
//! (`%2e%2e`, `.%2e`, `..%2f`, `\`, `..;`, `%252e`, …): each is refused by the gateway itself
//! with 400, before the limiter and the token check, and never reaches a service; what a
//! service is sent is, byte for byte, the path the gateway matched.
//!
//! The requests are written on the socket by hand: reqwest, like every WHATWG URL parser,
//! would resolve `..`, `%2e%2e` and `\` itself before sending, and the gateway would never
//! see the attack.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::{RunningGateway, behind_a_gateway, settings_for};
use crate::helpers::{ALL, start};

/// How the gateway's own refusal of a path starts (a service's 400 says something else).
const REFUSED: &str = "the request path is refused: ";

/// Every way tried to climb one segment out of `prefix` (or to hide a separator) before
/// `rest`: a parser that folds the spelling reads each as `/{rest}` at the service.
fn climbing(prefix: &str, rest: &str) -> Vec<String> {
    [
        "/../",
        "/./../",
        "/%2e%2e/",
        "/%2E%2E/",
        "/%2e%2E/",
        "/.%2e/",
        "/.%2E/",
        "/%2e./",
        "/%2E./",
        "/%2e%2e/./",
        "/%2e/%2e%2e/",
        "/x/../../",
        "/x/%2e%2e/%2e%2e/",
        "//../",
        "/%252e%252e/",
        "/%252E%252E/",
        "/..%252f",
        "/..%2f",
        "/..%2F",
        "/%2e%2e%2f",
        "/..%5c",
        "/..%5C",
        "/..\\",
        "/%2e%2e\\",
        "/..;/",
        "/.%2e;x=1/",
        "/%2e%2e;jsessionid=x/",
        "/%c0%ae%c0%ae/",
        "/%C0%AE%C0%AE/",
        "/%2e%2e%00/",
    ]
    .iter()
    .map(|climb| format!("{prefix}{climb}{rest}"))
    .collect()
}

/// Sends `method target` to the gateway exactly as written, with `token` and a JSON `body`
/// if given, and returns the status and the body of the answer.
async fn send_raw(
    gateway: &RunningGateway,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let address = gateway.url.trim_start_matches("http://");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-length: {}\r\n",
        payload.len()
    );
    if body.is_some() {
        request.push_str("content-type: application/json\r\n");
    }
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {target} in 30 s"));
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {target}: not an HTTP answer: {answer:?}"));
    let code: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: no status in {head:?}"));
    (StatusCode::from_u16(code).unwrap(), body.to_owned())
}

/// Sends `method target` and checks the gateway refused it itself with 400, and that the
/// answer holds none of `secrets` (what the service's answer would have shown).
async fn assert_refused(
    gateway: &RunningGateway,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<&Value>,
    secrets: &[&str],
) {
    let (status, answer) = send_raw(gateway, method, target, token, body).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{method} {target}: {answer}"
    );
    let error: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|error| error.starts_with(REFUSED)),
        "{method} {target}: not the gateway's refusal of the path: {answer}"
    );
    for secret in secrets {
        assert!(
            !answer.contains(secret),
            "{method} {target}: the answer shows {secret}: {answer}"
        );
    }
}

#[tokio::test]
async fn paths_that_could_climb_out_of_their_route_are_refused_and_normal_ones_pass() {
    let (system, gateway, admin) = behind_a_gateway(&ALL).await;
    let (user, sku) = system.customer_and_product(700, 10).await;
    let order = json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] });
    let (status, _, placed) = gateway
        .call(Method::POST, "/api/orders", Some(&admin), Some(&order))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_id = placed["id"].as_str().unwrap().to_owned();
    assert_eq!(system.final_order(&order_id).await["status"], "confirmed");
    // What the paths below are after is there, and the admin may read it straight from the
    // services: a path that got through would be answered 200 with it.
    assert!(system.cached_user("orders", &user).await.is_some());
    assert!(system.cached_user("payments", &user).await.is_some());
    assert!(system.cached_user("shipping", &user).await.is_some());
    assert!(system.reservation(&order_id).await.is_some());

    let cached_user = format!("cache/users/{user}");
    let reservation = format!("reservations/{order_id}");
    let targets = [
        ("/api/orders", cached_user.as_str(), user.as_str()),
        ("/api/products", reservation.as_str(), order_id.as_str()),
        ("/api/payments", cached_user.as_str(), user.as_str()),
        ("/api/shipments", cached_user.as_str(), user.as_str()),
    ];
    for (prefix, rest, secret) in targets {
        for target in climbing(prefix, rest) {
            assert_refused(&gateway, "GET", &target, Some(&admin), None, &[secret]).await;
        }
    }
    // Signing in through users' prefix would have been limited as a write, not a sign-in.
    let sign_in = json!({
        "grant_type": "password", "email": system.admin.email, "password": system.admin.password,
    });
    for target in climbing("/api/users", "auth/token") {
        for token in [None, Some(admin.as_str())] {
            assert_refused(
                &gateway,
                "POST",
                &target,
                token,
                Some(&sign_in),
                &["access_token"],
            )
            .await;
        }
    }
    // The order itself, by paths that are not its path.
    for target in [
        format!("/api/orders//{order_id}"),
        format!("/api//orders/{order_id}"),
        format!("/api/orders/./{order_id}"),
        format!("/api/orders/%2e/{order_id}"),
        format!("/api/orders/{order_id}/.."),
        format!("/api/orders/{order_id}/."),
        format!("/api/orders/{order_id}/%2e%2e"),
        format!("/api/orders/{order_id};jsessionid=x"),
        format!("/api/orders/{order_id}%00"),
        format!("/api/orders/{order_id}%3f"),
        format!("/api/%6frders/{order_id}"),
        format!("/api/orders%2f{order_id}"),
        format!("/api/orders%5c{order_id}"),
        format!("/api/orders\\{order_id}"),
    ] {
        assert_refused(&gateway, "GET", &target, Some(&admin), None, &["confirmed"]).await;
    }
    // The summary's `{id}` is sent on inside users' and orders' URLs.
    assert_refused(
        &gateway,
        "GET",
        "/api/users/%2e%2e/summary",
        Some(&admin),
        None,
        &[],
    )
    .await;

    // Normal paths, with or without a query, pass as before.
    let (status, answer) = send_raw(
        &gateway,
        "GET",
        &format!("/api/orders/{order_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _, fetched) = gateway
        .call(
            Method::GET,
            &format!("/api/orders/{order_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["status"], "confirmed", "{fetched}");
    let (status, _, payments) = gateway
        .call(
            Method::GET,
            &format!("/api/payments?order_id={order_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{payments}");
    assert_eq!(
        payments["payments"].as_array().map(Vec::len),
        Some(1),
        "{payments}"
    );
    let (status, _, product) = gateway
        .call(
            Method::GET,
            &format!("/api/products/{sku}?unused=%2e%2e"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{product}");
    assert_eq!(product["sku"], json!(sku), "{product}");
    gateway.stop().await;
    system.stop().await;
}

/// An upstream that answers every request with `{}` and records its request line.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut request = vec![0_u8; 64 * 1024];
                while let Ok(read) = socket.read(&mut request).await {
                    if read == 0 {
                        return;
                    }
                    let text = String::from_utf8_lossy(&request[..read]).into_owned();
                    let line = text.lines().next().unwrap_or_default();
                    // A request's body read on its own has no request line and is not answered.
                    if !line.ends_with(" HTTP/1.1") {
                        continue;
                    }
                    record.lock().unwrap().push(line.to_owned());
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn refused_paths_never_reach_a_service_and_what_is_sent_on_is_the_path_matched() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let (upstream, seen) = recording_upstream().await;
    let replace =
        ["orders", "inventory", "payments", "shipping"].map(|service| (service, upstream.as_str()));
    let gateway = RunningGateway::start(settings_for(&system, &replace).await).await;
    let admin = gateway
        .token(&system.admin.email, &system.admin.password)
        .await;
    let id = uuid::Uuid::new_v4().to_string();
    let cached_user = format!("cache/users/{id}");
    let reservation = format!("reservations/{id}");
    let mut sent = 0;
    for (prefix, rest) in [
        ("/api/orders", cached_user.as_str()),
        ("/api/products", reservation.as_str()),
        ("/api/payments", cached_user.as_str()),
        ("/api/shipments", cached_user.as_str()),
    ] {
        for target in climbing(prefix, rest) {
            assert_refused(&gateway, "GET", &target, Some(&admin), None, &[]).await;
            sent += 1;
        }
    }
    let reached = seen.lock().unwrap().clone();
    assert!(
        reached.is_empty(),
        "of {sent} refused requests, these reached a service: {reached:?}"
    );

    // What passes is sent on as it was matched, escapes, case and query untouched.
    for (target, sent_on) in [
        (
            format!("/api/orders/{id}"),
            format!("GET /orders/{id} HTTP/1.1"),
        ),
        (
            "/api/products/SKU-1".to_owned(),
            "GET /products/SKU-1 HTTP/1.1".to_owned(),
        ),
        (
            "/api/products/caf%C3%A9?x=%2e%2e".to_owned(),
            "GET /products/caf%C3%A9?x=%2e%2e HTTP/1.1".to_owned(),
        ),
        (
            "/api/products/caf%c3%a9".to_owned(),
            "GET /products/caf%c3%a9 HTTP/1.1".to_owned(),
        ),
        (
            format!("/api/payments?order_id={id}"),
            format!("GET /payments?order_id={id} HTTP/1.1"),
        ),
    ] {
        seen.lock().unwrap().clear();
        let (status, answer) = send_raw(&gateway, "GET", &target, Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{target}: {answer}");
        let reached = seen.lock().unwrap().clone();
        assert_eq!(reached, vec![sent_on], "{target}");
    }
    gateway.stop().await;
    system.stop().await;
}
