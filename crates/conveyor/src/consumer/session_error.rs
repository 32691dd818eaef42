//! Why a consumer's broker session ended early.

use crate::amqp::ConnectError;
use crate::publisher::PublishError;
use crate::topology::TopologyError;

/// Why a session ended early; the consumer reconnects after it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("the broker connection failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(
        "the broker confirmed no retry or dead-letter copy within {0:?} (a memory or disk \
         alarm blocks publishers?); reconnecting, the batch will be delivered again"
    )]
    PublishTimeout(std::time::Duration),
    #[error(
        "the broker took longer than {0:?} to open the session (declare the topology, open \
         the channels); reconnecting"
    )]
    SetupTimeout(std::time::Duration),
    #[error("the broker cancelled the consumer on {0}")]
    Cancelled(String),
    #[error("a worker stopped unexpectedly: {0}")]
    Worker(String),
}
