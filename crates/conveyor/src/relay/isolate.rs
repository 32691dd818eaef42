//! Finding the one row the broker will never take. A channel closed with
//! PRECONDITION_FAILED names no message, and the batch it closed held many: this pass sends
//! the oldest unsent rows one at a time, each confirm awaited, so such a refusal falls on
//! its own row, which is parked with the broker's words. The rows around it go out.

use std::time::Duration;

use lapin::Connection;

use super::{OutboxRelay, RelayError};
use crate::publisher::{ConfirmChannel, PublishError};

/// The longest the broker may take to answer the connection's close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a relay pass ended without an error.
pub(super) enum Pass {
    /// The pipeline flushed and stopped.
    Done,
    /// The one-by-one pass went through its rows; the pipeline takes over again.
    Isolated,
}

/// Sends one batch's worth of the oldest unsent rows one by one, parking each that the
/// broker refuses by closing the channel.
///
/// # Errors
/// [`RelayError`] when the database fails or the broker fails otherwise.
pub(super) async fn run(relay: &OutboxRelay) -> Result<Pass, RelayError> {
    let connection = relay.amqp.connect().await?;
    let result = send_one_by_one(relay, &connection).await;
    crate::amqp::close_within(&connection, "relay isolated a refusal", CLOSE_TIMEOUT).await;
    result.map(|()| Pass::Isolated)
}

async fn send_one_by_one(relay: &OutboxRelay, connection: &Connection) -> Result<(), RelayError> {
    let timeout = relay.options.confirm_timeout;
    let (rows, _) = relay.read_pending(0, &[]).await?;
    let mut open_channel = None;
    for row in rows {
        let channel = match open_channel.take() {
            Some(channel) => channel,
            None => tokio::time::timeout(
                timeout,
                ConfirmChannel::open(connection, &relay.amqp.user()),
            )
            .await
            .map_err(|_| RelayError::ConfirmTimeout(timeout))?
            .map_err(PublishError::from)?,
        };
        let one = std::slice::from_ref(&row);
        let sent = tokio::time::timeout(
            timeout,
            channel.publish_each(std::slice::from_ref(&row.message)),
        )
        .await
        .map_err(|_| RelayError::ConfirmTimeout(timeout))?;
        match sent {
            Ok(outcomes) => {
                relay.settle(one, outcomes).await?;
                open_channel = Some(channel);
            }
            // The channel is closed; the next row gets a new one.
            Err(PublishError::Broker(error)) if crate::amqp::is_precondition_failed(&error) => {
                let why = format!("the broker refuses this event for good: {error}");
                relay.park(&[row.id], &[why]).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
