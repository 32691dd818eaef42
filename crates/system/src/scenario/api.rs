//! A small client of the services' HTTP APIs, with errors that say which call failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Base URLs of the services' instances, one HTTP client for all, and the bearer token
/// calls carry. Calls to a service with several instances go to each in turn.
#[derive(Clone)]
pub struct Api {
    client: Client,
    urls: BTreeMap<String, Vec<String>>,
    turn: Arc<AtomicUsize>,
    busy_answers: Arc<AtomicUsize>,
    token: Option<Arc<str>>,
    /// The gateway's base URL, when calls it publishes go through it.
    gateway: Option<Arc<str>>,
}

/// How long a call keeps trying again while a service answers that it is busy.
const BUSY_RETRY_BUDGET: Duration = Duration::from_secs(60);

impl Api {
    /// One instance per service.
    ///
    /// # Errors
    /// When a service's URL is missing.
    pub fn new(urls: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        Self::with_replicas(
            urls.iter()
                .map(|(service, url)| (service.clone(), vec![url.clone()]))
                .collect(),
        )
    }

    /// Several instances per service.
    ///
    /// # Errors
    /// When a service has no URL.
    pub fn with_replicas(urls: BTreeMap<String, Vec<String>>) -> anyhow::Result<Self> {
        for service in crate::ServiceName::all() {
            anyhow::ensure!(
                urls.get(service.as_str())
                    .is_some_and(|urls| !urls.is_empty()),
                "no URL for the {service} service"
            );
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            client,
            urls,
            turn: Arc::default(),
            busy_answers: Arc::default(),
            token: None,
            gateway: None,
        })
    }

    /// This client, sending every call the gateway publishes (`/api/…`) through the gateway
    /// at `url`; the rest (the `/cache` and `/reservations` checks) still go to the services.
    #[must_use]
    pub fn through_gateway(&self, url: &str) -> Self {
        Self {
            gateway: Some(url.trim_end_matches('/').into()),
            ..self.clone()
        }
    }

    /// Where a call to `path` of `service` goes.
    fn url(&self, service: &str, path: &str) -> anyhow::Result<String> {
        match &self.gateway {
            Some(gateway) if published_by_gateway(service, path) => {
                Ok(format!("{gateway}/api{path}"))
            }
            _ => Ok(format!("{}{path}", self.base_url(service)?)),
        }
    }

    /// This client, its calls carrying `token`.
    #[must_use]
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.into()),
            ..self.clone()
        }
    }

    /// A token from users' `POST /auth/token` for this email and password.
    ///
    /// # Errors
    /// When users refuses them or cannot be reached.
    pub async fn token(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body =
            serde_json::json!({ "grant_type": "password", "email": email, "password": password });
        let (status, answer) = self
            .call(Method::POST, "users", "/auth/token", Some(&body), &[])
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "signing in as {email} answered {status}: {answer}"
        );
        answer["access_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("users answered a token request without a token: {answer}"))
    }

    /// This client with an operator's token from the environment: `CONVEYOR_TOKEN`, or a
    /// sign-in with `CONVEYOR_ADMIN_EMAIL` and `CONVEYOR_ADMIN_PASSWORD`.
    ///
    /// # Errors
    /// When neither is set, or users refuses the sign-in.
    pub async fn as_operator_from_env(&self) -> anyhow::Result<Self> {
        if let Ok(token) = std::env::var("CONVEYOR_TOKEN") {
            return Ok(self.with_token(token.trim()));
        }
        match (
            std::env::var("CONVEYOR_ADMIN_EMAIL"),
            std::env::var("CONVEYOR_ADMIN_PASSWORD"),
        ) {
            (Ok(email), Ok(password)) => self.signed_in(&email, &password).await,
            _ => anyhow::bail!(
                "this needs an admin's token: set CONVEYOR_TOKEN, or CONVEYOR_ADMIN_EMAIL and CONVEYOR_ADMIN_PASSWORD"
            ),
        }
    }

    /// This client, signed in as `email`: its calls carry that account's token.
    ///
    /// # Errors
    /// As [`Api::token`].
    pub async fn signed_in(&self, email: &str, password: &str) -> anyhow::Result<Self> {
        Ok(self.with_token(&self.token(email, password).await?))
    }

    /// The base URL of the instance of `service` whose turn it is.
    fn base_url(&self, service: &str) -> anyhow::Result<&str> {
        let urls = self
            .urls
            .get(service)
            .with_context(|| format!("no URL for the {service} service"))?;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Ok(&urls[turn % urls.len()])
    }

    /// How many times a service answered 503 with `Retry-After` (busy: the request was not
    /// run) or the gateway 429 (over the client's rate), and the call was sent again.
    pub fn busy_answers(&self) -> usize {
        self.busy_answers.load(Ordering::Relaxed)
    }

    /// Sends a request and returns the status and the JSON body. A 503 with `Retry-After`
    /// means the service did not run the request (every HTTP slot was taken), so it is sent
    /// again after the time asked, for up to a minute, as a well-behaved client would.
    ///
    /// # Errors
    /// When the service cannot be reached or answers with something other than JSON.
    pub async fn call(
        &self,
        method: Method,
        service: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Value)> {
        let started = std::time::Instant::now();
        loop {
            let url = self.url(service, path)?;
            let mut request = self.client.request(method.clone(), &url);
            if let Some(token) = &self.token
                && !headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            {
                request = request.bearer_auth(token);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.with_context(|| {
                format!("{method} {url} failed: is the {service} service running?")
            })?;
            let status = response.status();
            if let Some(wait) = busy_retry_after(&response)
                && started.elapsed() + wait < BUSY_RETRY_BUDGET
            {
                self.busy_answers.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%method, %url, ?wait, "The service is busy; trying again.");
                tokio::time::sleep(wait).await;
                continue;
            }
            let body = response
                .json()
                .await
                .with_context(|| format!("{method} {url} answered {status} without JSON"))?;
            return Ok((status, body));
        }
    }

    /// A GET that must succeed.
    ///
    /// # Errors
    /// When the call fails or answers an error status.
    pub async fn get(&self, service: &str, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(Method::GET, service, path, None, &[]).await?;
        anyhow::ensure!(
            status.is_success(),
            "GET {path} on {service} answered {status}: {body}"
        );
        Ok(body)
    }

    /// Every order `GET /orders?{query}` lists, page after page.
    ///
    /// # Errors
    /// When a page cannot be read.
    pub async fn orders(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let mut orders = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .get("orders", &format!("/orders?{query}&limit=1000{after}"))
                .await?;
            orders.extend(page["orders"].as_array().into_iter().flatten().cloned());
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return Ok(orders),
            }
        }
    }

    /// A POST that must succeed.
    ///
    /// # Errors
    /// When the call fails or answers an error status.
    pub async fn post(&self, service: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send_ok(Method::POST, service, path, body).await
    }

    /// A PATCH that must succeed.
    ///
    /// # Errors
    /// When the call fails or answers an error status.
    pub async fn patch(&self, service: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send_ok(Method::PATCH, service, path, body).await
    }

    async fn send_ok(
        &self,
        method: Method,
        service: &str,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self
            .call(method.clone(), service, path, Some(body), &[])
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "{method} {path} on {service} answered {status}: {answer}"
        );
        Ok(answer)
    }

    /// The bearer token this client's calls carry, if any.
    pub fn bearer_token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Whether the gateway sends `path` of `service` on (it publishes `/api/<prefix>/…` only).
fn published_by_gateway(service: &str, path: &str) -> bool {
    let first = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    matches!(
        (service, first),
        ("users", "users" | "auth")
            | ("orders", "orders")
            | ("inventory", "products")
            | ("payments", "payments")
            | ("shipping", "shipments")
    )
}

/// The wait a 503 or 429 asks for in its `Retry-After` (whole seconds), if it is one: the
/// request was not run.
fn busy_retry_after(response: &reqwest::Response) -> Option<Duration> {
    if ![
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .contains(&response.status())
    {
        return None;
    }
    let seconds: u64 = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.clamp(1, 10)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that gives each connection's request the next of `answers` (status line and
    /// headers), each with a JSON body, and closes the connection.
    async fn serve(answers: Vec<&'static str>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for head in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0_u8; 4096];
                let _ = socket.read(&mut request).await.unwrap();
                let answer = format!(
                    "{head}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        url
    }

    fn api_at(url: &str) -> Api {
        Api::with_replicas(
            crate::ServiceName::all()
                .map(|service| (service.as_str().to_owned(), vec![url.to_owned()]))
                .collect(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_busy_answer_is_sent_again_after_the_wait_it_asks_for() {
        let url = serve(vec![
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1",
            "HTTP/1.1 201 Created",
        ])
        .await;
        let api = api_at(&url);
        let (status, _) = api
            .call(Method::POST, "orders", "/orders", None, &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(api.busy_answers(), 1);
    }

    #[test]
    fn the_gateway_takes_what_it_publishes_and_the_rest_goes_direct() {
        let api = api_at("http://service").through_gateway("http://gateway/");
        let cases = [
            (
                "orders",
                "/orders?user_id=1",
                "http://gateway/api/orders?user_id=1",
            ),
            ("users", "/auth/token", "http://gateway/api/auth/token"),
            (
                "inventory",
                "/products/LAMP",
                "http://gateway/api/products/LAMP",
            ),
            (
                "shipping",
                "/shipments?order_id=1",
                "http://gateway/api/shipments?order_id=1",
            ),
            ("orders", "/cache/users/1", "http://service/cache/users/1"),
            (
                "inventory",
                "/reservations/1",
                "http://service/reservations/1",
            ),
        ];
        for (service, path, expected) in cases {
            assert_eq!(api.url(service, path).unwrap(), expected);
        }
    }

    #[tokio::test]
    async fn a_429_with_retry_after_is_sent_again_too() {
        let url = serve(vec![
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1",
            "HTTP/1.1 200 OK",
        ])
        .await;
        let api = api_at(&url);
        let (status, _) = api
            .call(Method::GET, "orders", "/orders", None, &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(api.busy_answers(), 1);
    }

    #[tokio::test]
    async fn a_503_without_retry_after_is_the_answer() {
        let url = serve(vec!["HTTP/1.1 503 Service Unavailable"]).await;
        let api = api_at(&url);
        let (status, _) = api
            .call(Method::GET, "orders", "/readyz", None, &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.busy_answers(), 0);
    }
}
