//! Names of the AMQP headers Conveyor reads and writes, and typed access to them.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// W3C trace context: the producer's span, which the consumer's span continues.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace context's vendor-specific state, carried with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";
/// The service whose consumer dead-lettered the message.
pub const SERVICE: &str = "x-conveyor-service";
/// Why the last attempt failed, on retry and dead-letter copies; long errors are cut.
pub const ERROR: &str = "x-conveyor-error";
/// One of [`crate::DeadLetterKind`]'s names.
pub const ERROR_KIND: &str = "x-conveyor-error-kind";
/// Failed handling attempts so far.
pub const ATTEMPTS: &str = "x-conveyor-attempts";
/// When the consumer dead-lettered the message, in RFC 3339.
pub const FAILED_AT: &str = "x-conveyor-failed-at";
/// The exchange the message was first delivered from, kept across retries.
pub const ORIGINAL_EXCHANGE: &str = "x-conveyor-original-exchange";
/// The routing key the message was first delivered with, kept across retries.
pub const ORIGINAL_ROUTING_KEY: &str = "x-conveyor-original-routing-key";
/// The broker user that first published the event, on copies that a consumer (retry) or an
/// operator (replay) published again; see `crate::source`.
pub const PUBLISHER: &str = "x-conveyor-publisher";
/// How many times an operator replayed this dead letter.
pub const REPLAY_COUNT: &str = "x-conveyor-replay-count";
/// The operator's command run that last replayed or moved this dead letter: a letter that
/// fails again and comes back is not sent a second time by the same run.
pub const REPLAY_RUN: &str = "x-conveyor-replay-run";

/// Reads a header as text, whichever string type the sender used.
pub fn get_str<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a str> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
        AMQPValue::ShortString(value) => Some(value.as_str()),
        _ => None,
    }
}

/// Reads a header as a count, whichever integer type the sender used.
pub fn get_u32(headers: &FieldTable, name: &str) -> Option<u32> {
    let number = match headers.inner().get(name)? {
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok()?.parse().ok()?,
        _ => return None,
    };
    u32::try_from(number).ok()
}

/// Sets a header to text (an AMQP long string), replacing any of the same name.
pub fn set_str(headers: &mut FieldTable, name: &str, value: &str) {
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongString(LongString::from(value)),
    );
}

/// `headers` without `name` (lapin's table has no removal).
pub fn without(headers: &FieldTable, name: &str) -> FieldTable {
    let mut kept = FieldTable::default();
    for (key, value) in headers.inner() {
        if key.as_str() != name {
            kept.insert(key.clone(), value.clone());
        }
    }
    kept
}

/// Sets a header to a count (a signed 64-bit integer), replacing any of the same name.
pub fn set_u32(headers: &mut FieldTable, name: &str, value: u32) {
    headers.insert(
        ShortString::from(name),
        AMQPValue::LongLongInt(i64::from(value)),
    );
}
