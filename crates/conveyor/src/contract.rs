//! The hook through which an event contract (the `events-schema` crate) checks events: the
//! outbox and publisher before an event leaves its producer, the consumer when it arrives.

use crate::envelope::Envelope;

/// Checks an event against the contract for its type and version.
pub trait Contract: Send + Sync + 'static {
    /// # Errors
    /// [`ContractViolation`] naming the event, its version and what is wrong.
    fn check(&self, envelope: &Envelope) -> Result<(), ContractViolation>;

    /// Who may publish `event_type`, by service name (`payments`, `gateway`). Where every
    /// service connects as its own broker user, a consumer refuses an event of this type
    /// from any other user; none listed means none may.
    fn publishers(&self, event_type: &str) -> Vec<&'static str>;
}

/// An event breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ContractViolation {
    /// What is wrong, as the contract words it; also the text the error displays.
    pub message: String,
}

impl ContractViolation {
    /// A violation described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
