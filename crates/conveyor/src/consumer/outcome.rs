//! Where a delivery ends up, and the retry or dead-letter message that takes it there.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::message::Delivery;

use super::delivery::came_from_retry;
use crate::headers;
use crate::publisher::OutgoingMessage;
use crate::topology::Names;

/// Why a message was dead-lettered, as written to `x-conveyor-error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The body is not a CloudEvents envelope.
    Malformed,
    /// The event's data breaks its contract.
    Schema,
    /// No handler is registered for the event type.
    UnknownType,
    /// Published by a broker user that may not publish its type (see `crate::source`).
    ForbiddenSource,
    /// The handler said retrying cannot help.
    Permanent,
    /// Every retry tier failed.
    RetriesExhausted,
}

impl DeadLetterKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 6] = [
        Self::Malformed,
        Self::Schema,
        Self::UnknownType,
        Self::ForbiddenSource,
        Self::Permanent,
        Self::RetriesExhausted,
    ];

    /// The text written to `x-conveyor-error-kind`, e.g. `unknown-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Schema => "schema",
            Self::UnknownType => "unknown-type",
            Self::ForbiddenSource => "forbidden-source",
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries-exhausted",
        }
    }

    /// The kind whose [`as_str`](Self::as_str) text is `text`; `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error texts longer than this are cut, so one huge error cannot bloat every header.
const MAX_ERROR_LEN: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Handled,
    Duplicate,
    Retry {
        delay: Duration,
        attempts: u32,
        error: String,
    },
    DeadLetter {
        kind: DeadLetterKind,
        error: String,
        attempts: u32,
    },
}

impl Outcome {
    pub(crate) fn dead_letter(
        kind: DeadLetterKind,
        error: impl Into<String>,
        attempts: u32,
    ) -> Self {
        Self::DeadLetter {
            kind,
            error: capped(error.into()),
            attempts,
        }
    }

    /// A transient failure goes to the next retry tier, or to the dead letters once the
    /// tiers are used up. `attempts` counts this failure.
    pub(crate) fn transient(tiers: &[Duration], attempts: u32, error: String) -> Self {
        let tier = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
        match tiers.get(tier) {
            Some(delay) => Self::Retry {
                delay: *delay,
                attempts,
                error: capped(error),
            },
            None => Self::dead_letter(DeadLetterKind::RetriesExhausted, error, attempts),
        }
    }

    /// A lost race for a lock (a busy key, a deadlock, a lock timeout): retried after the
    /// first tier, and not counted as a failed attempt, so contention never exhausts the
    /// tiers into a dead letter. `attempts` counts earlier failures only.
    pub(crate) fn conflict(tiers: &[Duration], attempts: u32, error: String) -> Self {
        Self::Retry {
            delay: tiers.first().copied().unwrap_or(Duration::from_secs(1)),
            attempts,
            error: capped(error),
        }
    }

    /// The message that carries this delivery to its retry queue or dead-letter queue.
    pub(crate) fn message(
        &self,
        names: &Names,
        service: &str,
        delivery: &Delivery,
    ) -> Option<OutgoingMessage> {
        let (exchange, routing_key, error, attempts) = match self {
            Self::Handled | Self::Duplicate => return None,
            Self::Retry {
                delay,
                attempts,
                error,
            } => {
                let queue = names.retry_queue(service, *delay);
                (names.retry_exchange(), queue, error, *attempts)
            }
            Self::DeadLetter {
                error, attempts, ..
            } => (
                names.dead_letter_exchange(),
                names.dead_letter_routing_key(service),
                error,
                *attempts,
            ),
        };
        let mut table = delivery.properties.headers().clone().unwrap_or_default();
        // Where it was first published is kept from a retry copy, never taken from a producer.
        let keep_original = came_from_retry(delivery)
            && headers::get_str(&table, headers::ORIGINAL_EXCHANGE).is_some();
        if !keep_original {
            headers::set_str(
                &mut table,
                headers::ORIGINAL_EXCHANGE,
                delivery.exchange.as_str(),
            );
            headers::set_str(
                &mut table,
                headers::ORIGINAL_ROUTING_KEY,
                delivery.routing_key.as_str(),
            );
        }
        // The copy is published by this service; who sent the event first goes with it,
        // as far as the broker vouches for it (never a header a producer wrote itself).
        let publisher =
            crate::source::origin(&delivery.properties, &crate::source::relays(names, service));
        match publisher {
            Some(publisher) => headers::set_str(&mut table, headers::PUBLISHER, &publisher),
            None => table = headers::without(&table, headers::PUBLISHER),
        }
        headers::set_u32(&mut table, headers::ATTEMPTS, attempts);
        headers::set_str(&mut table, headers::ERROR, truncate(error));
        if let Self::DeadLetter { kind, .. } = self {
            headers::set_str(&mut table, headers::SERVICE, service);
            headers::set_str(&mut table, headers::ERROR_KIND, kind.as_str());
            headers::set_str(
                &mut table,
                headers::FAILED_AT,
                &chrono::Utc::now().to_rfc3339(),
            );
        }
        Some(OutgoingMessage {
            exchange,
            routing_key,
            body: delivery.data.clone(),
            properties: copy_properties(&delivery.properties)
                .with_headers(table)
                .with_delivery_mode(2),
        })
    }
}

/// The properties a retry or dead-letter copy keeps. Not a producer's `expiration` (a dead
/// letter would silently expire from its queue), nor `user_id` or `cluster_id`, which the
/// broker checks against the connection that publishes the copy.
fn copy_properties(original: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(value) = original.content_type() {
        copy = copy.with_content_type(value.clone());
    }
    if let Some(value) = original.content_encoding() {
        copy = copy.with_content_encoding(value.clone());
    }
    if let Some(value) = original.correlation_id() {
        copy = copy.with_correlation_id(value.clone());
    }
    if let Some(value) = original.reply_to() {
        copy = copy.with_reply_to(value.clone());
    }
    if let Some(value) = original.message_id() {
        copy = copy.with_message_id(value.clone());
    }
    if let Some(value) = original.timestamp() {
        copy = copy.with_timestamp(*value);
    }
    if let Some(value) = original.kind() {
        copy = copy.with_type(value.clone());
    }
    if let Some(value) = original.app_id() {
        copy = copy.with_app_id(value.clone());
    }
    if let Some(value) = original.priority() {
        copy = copy.with_priority(*value);
    }
    copy
}

/// An error text no longer than the header it ends in: a huge invalid message cannot make
/// an equally huge log line.
fn capped(mut error: String) -> String {
    let keep = truncate(&error).len();
    if keep < error.len() {
        error.truncate(keep);
        error.push('…');
    }
    error
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_ERROR_LEN {
        return text;
    }
    let mut end = MAX_ERROR_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_error_is_capped_before_anyone_logs_it() {
        let huge = "a value that is wrong; ".repeat(50_000);
        let Outcome::DeadLetter { error, .. } =
            Outcome::dead_letter(DeadLetterKind::Schema, huge, 0)
        else {
            unreachable!()
        };
        assert!(
            error.len() <= MAX_ERROR_LEN + '…'.len_utf8(),
            "{}",
            error.len()
        );
        assert!(error.ends_with('…'));
        let retry = Outcome::transient(&[Duration::from_secs(1)], 1, "é".repeat(5000));
        assert!(matches!(retry, Outcome::Retry { error, .. } if error.len() <= MAX_ERROR_LEN + 3));
    }

    #[test]
    fn transient_failures_walk_the_tiers_then_exhaust() {
        let tiers = [Duration::from_secs(1), Duration::from_secs(10)];
        let delays: Vec<_> = (1..=3)
            .map(|attempts| Outcome::transient(&tiers, attempts, "down".into()))
            .collect();
        assert!(matches!(delays[0], Outcome::Retry { delay, .. } if delay.as_secs() == 1));
        assert!(matches!(delays[1], Outcome::Retry { delay, .. } if delay.as_secs() == 10));
        assert!(matches!(
            delays[2],
            Outcome::DeadLetter {
                kind: DeadLetterKind::RetriesExhausted,
                attempts: 3,
                ..
            }
        ));
    }

    #[test]
    fn kinds_parse_back_from_their_header_text() {
        for kind in DeadLetterKind::ALL {
            assert_eq!(DeadLetterKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(DeadLetterKind::parse("nope"), None);
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        // One ASCII byte first, so byte MAX_ERROR_LEN falls inside a two-byte character.
        let long = format!("a{}", "é".repeat(MAX_ERROR_LEN));
        let cut = truncate(&long);
        assert_eq!(cut.len(), MAX_ERROR_LEN - 1);
        assert!(cut.ends_with('é'));
    }
}
