//! A small client of the services' HTTP APIs, with errors that say which call failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Base URLs of the services' instances, and one HTTP client for all. Calls to a service
/// with several instances go to each in turn.
#[derive(Clone)]
pub struct Api {
    client: Client,
    urls: BTreeMap<String, Vec<String>>,
    turn: Arc<AtomicUsize>,
}

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
        })
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

    /// Sends a request and returns the status and the JSON body.
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
        let url = format!("{}{path}", self.base_url(service)?);
        let mut request = self.client.request(method.clone(), &url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url} failed: is the {service} service running?"))?;
        let status = response.status();
        let body = response
            .json()
            .await
            .with_context(|| format!("{method} {url} answered {status} without JSON"))?;
        Ok((status, body))
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
        let (status, answer) = self
            .call(Method::POST, service, path, Some(body), &[])
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "POST {path} on {service} answered {status}: {answer}"
        );
        Ok(answer)
    }
}
