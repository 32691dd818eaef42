//! One place that opens broker connections, shared by publisher, relay and consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

/// The broker URL used when `AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Where the brokers are and how this process names its connections.
///
/// `AMQP_URL` may list several brokers of one cluster, separated by commas. Each new
/// connection starts with the next broker in turn (spreading connections over the nodes)
/// and moves on to the others when one cannot be reached, so a lost node is replaced by a
/// live one at the next reconnect.
#[derive(Clone)]
pub struct AmqpConfig {
    urls: Arc<[String]>,
    connection_name: String,
    /// Which broker the next connection tries first; shared by clones.
    next: Arc<AtomicUsize>,
}

/// How long one broker may take to accept a connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// No broker could be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not connect to RabbitMQ at {urls}: {reasons}. Is the broker running, and do AMQP_URL's hosts, credentials and vhost match it?"
)]
pub struct ConnectError {
    urls: String,
    reasons: String,
}

impl AmqpConfig {
    /// `url`: one broker URL, or several of one cluster separated by commas.
    pub fn new(url: impl Into<String>, connection_name: impl Into<String>) -> Self {
        let urls: Vec<String> = url
            .into()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        Self {
            urls: urls.into(),
            connection_name: connection_name.into(),
            next: Arc::default(),
        }
    }

    /// `AMQP_URL` from the environment, or the local default.
    pub fn from_env(connection_name: impl Into<String>) -> Self {
        let url = std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
        Self::new(url, connection_name)
    }

    /// The same brokers, with connections named `connection_name`.
    #[must_use]
    pub fn named(&self, connection_name: impl Into<String>) -> Self {
        Self {
            urls: Arc::clone(&self.urls),
            connection_name: connection_name.into(),
            next: Arc::default(),
        }
    }

    /// The name connections show in the broker's management UI.
    pub fn connection_name(&self) -> &str {
        &self.connection_name
    }

    /// The brokers, as given (comma-separated).
    pub fn url(&self) -> String {
        self.urls.join(",")
    }

    /// Each broker's URL.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The broker user the connections authenticate as (the first URL's; a cluster's URLs
    /// name one user), `guest` when the URL names none, as lapin connects then. Publishers
    /// set it as each message's `user_id`, which the broker checks against the connection.
    pub fn user(&self) -> String {
        self.urls
            .first()
            .and_then(|url| url.parse::<lapin::uri::AMQPUri>().ok())
            .map_or_else(|| "guest".to_owned(), |uri| uri.authority.userinfo.username)
    }

    /// The URLs with passwords masked, for logs and error messages.
    pub fn redacted_url(&self) -> String {
        self.urls
            .iter()
            .map(|url| redact_url(url))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Opens a new connection to the next broker that accepts one; recovery is Conveyor's own
    /// (each loop reconnects), not lapin's.
    ///
    /// # Errors
    /// [`ConnectError`] when every broker refuses or cannot be reached.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let count = self.urls.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut reasons = Vec::new();
        for offset in 0..count {
            let url = &self.urls[(first + offset) % count];
            let properties = ConnectionProperties::default()
                .with_connection_name(self.connection_name.clone().into());
            let attempt =
                tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties));
            match attempt.await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(error)) => reasons.push(format!("{}: {error}", redact_url(url))),
                Err(_) => reasons.push(format!(
                    "{}: no answer within {CONNECT_TIMEOUT:?}",
                    redact_url(url)
                )),
            }
        }
        if reasons.is_empty() {
            reasons.push("AMQP_URL names no broker".to_owned());
        }
        Err(ConnectError {
            urls: self.redacted_url(),
            reasons: reasons.join("; "),
        })
    }
}

/// `url` (any `scheme://user:password@host…`) with its password masked, for logs and
/// error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
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

/// Closes `connection`, waiting at most `limit` for the broker's answer: a broker under a
/// memory or disk alarm, or one that went silent, may never give one.
pub async fn close_within(connection: &Connection, reason: &str, limit: Duration) {
    let close = connection.close(200, reason.into());
    let _ = tokio::time::timeout(limit, close).await;
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

/// `queue` as the broker counts it now (ready messages, consumers), looked at on a channel
/// of its own, since a passive declare of a missing queue closes its channel.
///
/// # Errors
/// The broker's error when no channel opens or the queue does not exist.
pub async fn queue_depth(
    connection: &Connection,
    queue: &str,
) -> Result<lapin::Queue, lapin::Error> {
    let channel = connection.create_channel().await?;
    let declared = declare_passive(&channel, queue).await?;
    let _ = channel.close(200, "counted".into()).await;
    Ok(declared)
}

/// Whether the broker refused an operation because the exchange or queue does not exist.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

/// Whether the broker closed the channel with RESOURCE_LOCKED (405): an exclusive queue that
/// another connection holds.
pub(crate) fn is_resource_locked(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)))
}

/// Whether the broker closed the channel with PRECONDITION_FAILED (406): for a publish, a
/// body over its `max_message_size` or a `user_id` that is not the connection's user.
pub(crate) fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
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

    #[test]
    fn several_brokers_are_listed_with_commas_and_each_is_redacted() {
        let config = AmqpConfig::new(
            "amqp://app:s3cret@node1:5672/%2f, amqp://app:s3cret@node2:5672/%2f,",
            "test",
        );
        assert_eq!(config.urls().len(), 2);
        assert_eq!(
            config.redacted_url(),
            "amqp://app:***@node1:5672/%2f,amqp://app:***@node2:5672/%2f"
        );
    }

    #[tokio::test]
    async fn a_broker_that_is_down_is_skipped_for_the_next_one() {
        // Port 9 on loopback refuses at once; the second URL is the test broker.
        let broker = std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
        let config = AmqpConfig::new(
            format!("amqp://guest:guest@127.0.0.1:9/%2f,{broker}"),
            "test",
        );
        for _ in 0..2 {
            let connection = config.connect().await.unwrap();
            assert!(connection.status().connected());
            connection.close(200, "done".into()).await.unwrap();
        }
        let down = AmqpConfig::new("amqp://guest:secret@127.0.0.1:9/%2f", "test");
        let error = down.connect().await.unwrap_err().to_string();
        assert!(
            error.contains("127.0.0.1:9") && !error.contains("secret"),
            "{error}"
        );
    }
}
