//! What became of a delivery in a [`super::Harness`], and the events its handler emitted.

use std::time::Duration;

use crate::consumer::DeadLetterKind;
use crate::envelope::Envelope;
use crate::event::Event;
use crate::publisher::OutgoingMessage;

/// A harness could not step, or a test's expectation of the outcome did not hold. Its
/// message says what happened instead, so `?` in a test reports it well.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A query on the harness's database failed.
    #[error("the harness's database failed: {0}")]
    Database(#[from] sqlx::Error),
    /// A row of the outbox does not parse as an envelope.
    #[error("the outbox holds a row that is not an envelope (id {id}): {error}")]
    Outbox {
        /// The row's id.
        id: i64,
        /// Why it does not parse.
        error: String,
    },
    /// The event was expected to be handled; the text says what became of it instead.
    #[error("expected the event to be handled, but it was {0}")]
    NotHandled(String),
    /// Not exactly one event of the expected type was emitted.
    #[error("expected one {event_type} among the emitted events, found {found}: {emitted:?}")]
    NotOne {
        /// The type expected once.
        event_type: &'static str,
        /// How many events of that type were emitted.
        found: usize,
        /// The types of every emitted event, in order.
        emitted: Vec<String>,
    },
    /// An emitted event's data does not decode into its Rust type.
    #[error("an emitted {event_type} does not decode into its Rust type: {error}")]
    Decode {
        /// The event's type.
        event_type: &'static str,
        /// Why its data does not decode.
        error: serde_json::Error,
    },
    /// What was emitted is not one event answering the cause.
    #[error("expected one event answering event {cause}, but {found}")]
    NotAnAnswer {
        /// The id of the event to be answered.
        cause: uuid::Uuid,
        /// What was emitted instead, or how the one event fails to answer.
        found: String,
    },
    /// No harness in the network has the service name asked for.
    #[error("no harness in this network is named {0:?}")]
    UnknownService(String),
    /// A flow went past this many deliveries without settling.
    #[error(
        "the flow did not settle after {0} deliveries: do two handlers answer each other forever?"
    )]
    Endless(usize),
}

/// What the consumer did with one delivery.
#[derive(Debug)]
#[non_exhaustive]
pub enum Handling {
    /// The handler ran and its transaction committed, with these follow-up events.
    Handled(Emitted),
    /// The inbox had seen the event id: nothing ran again.
    Duplicate,
    /// A transient failure (or a busy key): the broker would hand it back after a delay.
    Retry(Box<Retry>),
    /// Dead-lettered: the broker would keep it in the service's dead-letter queue.
    DeadLetter {
        /// Why it was dead-lettered.
        kind: DeadLetterKind,
        /// The failure it was dead-lettered with.
        error: String,
        /// Failed attempts, this one included.
        attempts: u32,
    },
}

impl Handling {
    /// The events emitted, or why there are none.
    ///
    /// # Errors
    /// [`HarnessError::NotHandled`] naming the outcome when the handler did not commit.
    pub fn handled(self) -> Result<Emitted, HarnessError> {
        match self {
            Self::Handled(emitted) => Ok(emitted),
            other => Err(HarnessError::NotHandled(other.describe())),
        }
    }

    /// Whether the handler ran and its transaction committed.
    pub fn is_handled(&self) -> bool {
        matches!(self, Self::Handled(_))
    }

    /// Whether the inbox had seen the event id, so nothing ran again.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate)
    }

    /// The dead-letter kind, if it was dead-lettered.
    pub fn dead_letter_kind(&self) -> Option<DeadLetterKind> {
        match self {
            Self::DeadLetter { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The retry, if the broker would hand it back later.
    pub fn as_retry(&self) -> Option<&Retry> {
        match self {
            Self::Retry(retry) => Some(retry),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Handled(emitted) => format!("handled, emitting {:?}", emitted.types()),
            Self::Duplicate => "a duplicate (the inbox had its id)".to_owned(),
            Self::Retry(retry) => format!(
                "sent to retry after {:?} (attempt {}): {}",
                retry.delay, retry.attempts, retry.error
            ),
            Self::DeadLetter { kind, error, .. } => format!("dead-lettered as {kind}: {error}"),
        }
    }
}

/// A delivery the consumer sent to a retry tier, with the copy the tier would hand back.
#[derive(Debug)]
pub struct Retry {
    /// Failed attempts so far, this one included (not raised by a busy key).
    pub attempts: u32,
    /// The tier's delay, which [`super::Harness::retry`] does not wait.
    pub delay: Duration,
    /// The failure that sent it to retry.
    pub error: String,
    pub(super) copy: OutgoingMessage,
}

/// The events a handler emitted, in the order it emitted them.
#[derive(Debug, Clone, Default)]
pub struct Emitted(pub(super) Vec<Envelope>);

impl Emitted {
    /// The emitted events, in the order they were emitted.
    pub fn envelopes(&self) -> &[Envelope] {
        &self.0
    }

    /// Whether no event was emitted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many events were emitted.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Their types, in order.
    pub fn types(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|event| event.event_type.clone())
            .collect()
    }

    /// Every emitted event of type `E`, decoded.
    ///
    /// # Errors
    /// [`HarnessError::Decode`] when one does not decode into `E`.
    pub fn all<E: Event>(&self) -> Result<Vec<E>, HarnessError> {
        self.0
            .iter()
            .filter(|event| event.event_type == E::TYPE)
            .map(|event| {
                serde_json::from_value(event.data.clone()).map_err(|error| HarnessError::Decode {
                    event_type: E::TYPE,
                    error,
                })
            })
            .collect()
    }

    /// The one event emitted, checked to answer `cause` as every follow-up should: caused
    /// by it, in its flow (correlation id) and about the same subject.
    ///
    /// # Errors
    /// [`HarnessError::NotAnAnswer`] saying what was emitted instead.
    pub fn answer_to(&self, cause: &Envelope) -> Result<&Envelope, HarnessError> {
        let not_an_answer = |found: String| HarnessError::NotAnAnswer {
            cause: cause.id,
            found,
        };
        let [answer] = self.0.as_slice() else {
            return Err(not_an_answer(format!("emitted {:?}", self.types())));
        };
        if answer.causationid != Some(cause.id)
            || answer.correlationid != cause.correlationid
            || answer.subject != cause.subject
        {
            return Err(not_an_answer(format!(
                "{} has causation {:?}, correlation {} and subject {:?} (the cause: correlation \
                 {}, subject {:?})",
                answer.event_type,
                answer.causationid,
                answer.correlationid,
                answer.subject,
                cause.correlationid,
                cause.subject
            )));
        }
        Ok(answer)
    }

    /// The one emitted event of type `E`.
    ///
    /// # Errors
    /// [`HarnessError::NotOne`] listing what was emitted when there is none or several.
    pub fn one<E: Event>(&self) -> Result<E, HarnessError> {
        let mut found = self.all::<E>()?;
        if found.len() == 1 {
            return Ok(found.remove(0));
        }
        Err(HarnessError::NotOne {
            event_type: E::TYPE,
            found: found.len(),
            emitted: self.types(),
        })
    }
}
