//! One place that opens broker connections, shared by publisher, relay and consumer.

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

/// The broker URL used when `AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where the broker is and how this process names its connections.
#[derive(Clone)]
pub struct AmqpConfig {
    url: String,
    connection_name: String,
}

/// The broker could not be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not connect to RabbitMQ at {url}: {source}. Is the broker running, and do AMQP_URL's host, credentials and vhost match it?"
)]
pub struct ConnectError {
    url: String,
    #[source]
    source: lapin::Error,
}

impl AmqpConfig {
    pub fn new(url: impl Into<String>, connection_name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connection_name: connection_name.into(),
        }
    }

    /// `AMQP_URL` from the environment, or the local default.
    pub fn from_env(connection_name: impl Into<String>) -> Self {
        let url = std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
        Self::new(url, connection_name)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL with the password masked, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        match (self.url.find("://"), self.url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.url[scheme_end + 3..at];
                let user = credentials.split(':').next().unwrap_or_default();
                format!(
                    "{}{user}:***{}",
                    &self.url[..scheme_end + 3],
                    &self.url[at..]
                )
            }
            _ => self.url.clone(),
        }
    }

    /// Opens a new connection; recovery is Conveyor's own (each loop reconnects), not lapin's.
    ///
    /// # Errors
    /// [`ConnectError`] when the broker refuses or cannot be reached.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into());
        Connection::connect(&self.url, properties)
            .await
            .map_err(|source| ConnectError {
                url: self.redacted_url(),
                source,
            })
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &self.redacted_url())
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

/// Asks for `queue`'s counts without creating it. A missing queue closes `channel` with
/// NOT_FOUND (see [`is_not_found`]).
///
/// # Errors
/// The broker's error, NOT_FOUND included.
pub async fn declare_passive(channel: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
}

/// Whether the broker refused an operation because the exchange or queue does not exist.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_a_log() {
        let config = AmqpConfig::new("amqp://app:s3cret@broker:5672/%2f", "test");
        assert_eq!(config.redacted_url(), "amqp://app:***@broker:5672/%2f");
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
