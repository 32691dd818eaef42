//! A small client of the services' HTTP APIs, with errors that say which call failed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Base URLs of the services, and one HTTP client for all.
#[derive(Clone)]
pub struct Api {
    client: Client,
    urls: BTreeMap<String, String>,
}

impl Api {
    /// # Errors
    /// When a service's URL is missing.
    pub fn new(urls: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        for service in crate::SERVICES {
            anyhow::ensure!(
                urls.contains_key(service),
                "no URL for the {service} service"
            );
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            client,
            urls: urls.clone(),
        })
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
        let url = format!("{}{path}", self.urls[service]);
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
