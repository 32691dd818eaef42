//! The RabbitMQ management HTTP API, as AMQP_URL's user: what `dlq list` and the operators'
//! console count with (nothing read to count) and `topology users --apply` makes users with.

use anyhow::Context;

/// The management API of the broker at AMQP_URL, with that URL's credentials.
pub struct ManagementApi {
    base: String,
    user: String,
    password: String,
    /// The vhost AMQP_URL names.
    pub vhost: String,
    client: reqwest::Client,
}

impl ManagementApi {
    /// `RABBITMQ_MANAGEMENT_URL` (default `http://127.0.0.1:15672`) with `amqp_url`'s user.
    ///
    /// # Errors
    /// When `amqp_url` does not parse or the management URL is not `http://`.
    pub fn for_broker(amqp_url: &str) -> anyhow::Result<Self> {
        let uri: lapin::uri::AMQPUri = amqp_url.parse().map_err(|error: String| {
            anyhow::anyhow!("AMQP_URL is not a valid AMQP URL: {error}")
        })?;
        let base = std::env::var("RABBITMQ_MANAGEMENT_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned());
        let base = base.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://"),
            "RABBITMQ_MANAGEMENT_URL={base:?}: only http:// is supported by this build; reach an \
             https-only API through a local tunnel (ssh -L 15672:localhost:15672 …)"
        );
        if !is_loopback(&base) {
            tracing::warn!(
                "AMQP_URL's user and password go unencrypted to {base}; prefer a local tunnel \
                 to the management API"
            );
        }
        Ok(Self {
            base,
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
            vhost: uri.vhost,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()?,
        })
    }

    /// `GET /api/<path>`; `what` names the request in errors.
    ///
    /// # Errors
    /// When the API is unreachable or refuses.
    pub async fn get(&self, path: &str, what: &str) -> anyhow::Result<reqwest::Response> {
        let request = self.client.get(format!("{}/api/{path}", self.base));
        self.send(request, what).await
    }

    /// `PUT /api/<path>` with `body`.
    ///
    /// # Errors
    /// As [`ManagementApi::get`].
    pub async fn put(
        &self,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> anyhow::Result<()> {
        let request = self
            .client
            .put(format!("{}/api/{path}", self.base))
            .json(body);
        self.send(request, what).await.map(drop)
    }

    /// `DELETE /api/<path>`.
    ///
    /// # Errors
    /// As [`ManagementApi::get`].
    pub async fn delete(&self, path: &str, what: &str) -> anyhow::Result<()> {
        let request = self.client.delete(format!("{}/api/{path}", self.base));
        self.send(request, what).await.map(drop)
    }

    /// AMQP_URL's user, to whom a vhost made here is given.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let base = &self.base;
        let response = request
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .with_context(|| format!("the RabbitMQ management API at {base} is unreachable: enable it (rabbitmq-plugins enable rabbitmq_management) or set RABBITMQ_MANAGEMENT_URL"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "the management API refused {what} ({}): check AMQP_URL's user {:?} has the tag it needs",
            response.status(),
            self.user
        );
        Ok(response)
    }
}

/// A path segment with everything but unreserved characters escaped.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Whether a URL names this machine.
fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(platform::is_loopback_host))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_on_this_machine_only_for_loopback_urls() {
        assert!(is_loopback("http://127.0.0.1:15672"));
        assert!(is_loopback("http://localhost:15672/"));
        assert!(is_loopback("http://[::1]:15672"));
        assert!(!is_loopback("http://rabbit.internal:15672"));
        assert!(!is_loopback("http://10.0.0.5:15672"));
    }
}
