//! Whether a dead letter says what the protocol's table says it must: the body byte for byte,
//! each header by name, type and value rule (times and error texts differ by language), and
//! the delivery's properties and other headers kept.

use conveyor::headers;
use lapin::types::AMQPValue;

use super::SERVICE;
use super::observe::Letter;

/// The header each case sets, which a dead letter must keep as it was.
pub(crate) const CASE_HEADER: &str = "x-conformance-case";
/// The `app_id` each case sets, which a dead letter must keep.
pub(crate) const APP_ID: &str = "conveyor-conformance";

/// What the dead letter of one case must be.
pub(crate) struct ExpectedLetter<'a> {
    pub(crate) case: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) attempts: i64,
    pub(crate) body: &'a [u8],
    pub(crate) message_id: String,
    /// The exchange and routing key the event first came through.
    pub(crate) original: (String, String),
}

/// Every way `letter` falls short of `expected`; empty when it is right.
pub(crate) fn problems(letter: &Letter, expected: &ExpectedLetter<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    if letter.body != expected.body {
        problems.push(format!(
            "its body is not the delivery's byte for byte ({} bytes against {} sent)",
            letter.body.len(),
            expected.body.len()
        ));
    }
    let empty = lapin::types::FieldTable::default();
    let headers = letter.properties.headers().as_ref().unwrap_or(&empty);
    let long_string = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(text)) => {
            Ok(String::from_utf8_lossy(text.as_bytes()).into_owned())
        }
        Some(other) => Err(format!(
            "header {name} is a {}, not a long string",
            type_name(other)
        )),
        None => Err(format!("header {name} is missing")),
    };
    let mut expect_text = |name: &str, want: &str| match long_string(name) {
        Ok(text) if text == want => {}
        Ok(text) => problems.push(format!("header {name} is {text:?}, not {want:?}")),
        Err(problem) => problems.push(problem),
    };
    expect_text(headers::SERVICE, SERVICE);
    expect_text(headers::ERROR_KIND, expected.kind);
    expect_text(headers::ORIGINAL_EXCHANGE, &expected.original.0);
    expect_text(headers::ORIGINAL_ROUTING_KEY, &expected.original.1);
    expect_text(CASE_HEADER, expected.case);
    match long_string(headers::ERROR) {
        Ok(text) if text.trim().is_empty() => {
            problems.push(format!("header {} is empty", headers::ERROR))
        }
        Ok(text) if text.len() > 1000 => problems.push(format!(
            "header {} has {} bytes, over 1,000",
            headers::ERROR,
            text.len()
        )),
        Ok(_) => {}
        Err(problem) => problems.push(problem),
    }
    match long_string(headers::FAILED_AT) {
        Ok(text) => match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(time) if time.offset().local_minus_utc() == 0 => {}
            Ok(_) => problems.push(format!(
                "header {} is {text:?}, not in UTC",
                headers::FAILED_AT
            )),
            Err(_) => problems.push(format!(
                "header {} is {text:?}, not RFC 3339",
                headers::FAILED_AT
            )),
        },
        Err(problem) => problems.push(problem),
    }
    match headers.inner().get(headers::ATTEMPTS) {
        Some(AMQPValue::LongLongInt(attempts)) if *attempts == expected.attempts => {}
        Some(AMQPValue::LongLongInt(attempts)) => problems.push(format!(
            "header {} is {attempts}, not {}",
            headers::ATTEMPTS,
            expected.attempts
        )),
        Some(other) => problems.push(format!(
            "header {} is a {}, not a signed 64-bit integer",
            headers::ATTEMPTS,
            type_name(other)
        )),
        None => problems.push(format!("header {} is missing", headers::ATTEMPTS)),
    }
    problems.extend(property_problems(letter, expected));
    problems
}

/// The properties a dead letter keeps from the delivery, and its persistence.
fn property_problems(letter: &Letter, expected: &ExpectedLetter<'_>) -> Vec<String> {
    let properties = &letter.properties;
    let mut problems = Vec::new();
    let kept = |name: &str, value: Option<&str>, want: &str| match value {
        Some(value) if value == want => None,
        Some(value) => Some(format!(
            "property {name} is {value:?}, not the delivery's {want:?}"
        )),
        None => Some(format!("property {name} was dropped")),
    };
    problems.extend(kept(
        "message_id",
        properties.message_id().as_ref().map(|id| id.as_str()),
        &expected.message_id,
    ));
    problems.extend(kept(
        "content_type",
        properties.content_type().as_ref().map(|kind| kind.as_str()),
        conveyor::CLOUDEVENTS_CONTENT_TYPE,
    ));
    problems.extend(kept(
        "app_id",
        properties.app_id().as_ref().map(|id| id.as_str()),
        APP_ID,
    ));
    if *properties.delivery_mode() != Some(2) {
        problems.push(format!(
            "property delivery_mode is {:?}, not 2 (persistent)",
            properties.delivery_mode()
        ));
    }
    problems
}

fn type_name(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::LongString(_) => "long string",
        AMQPValue::ShortString(_) => "short string",
        AMQPValue::LongLongInt(_) => "signed 64-bit integer",
        AMQPValue::LongInt(_) => "signed 32-bit integer",
        AMQPValue::LongUInt(_) => "unsigned 32-bit integer",
        AMQPValue::ShortInt(_) | AMQPValue::ShortUInt(_) => "16-bit integer",
        AMQPValue::ShortShortInt(_) | AMQPValue::ShortShortUInt(_) => "8-bit integer",
        AMQPValue::Boolean(_) => "boolean",
        AMQPValue::Double(_) | AMQPValue::Float(_) => "floating-point number",
        AMQPValue::Timestamp(_) => "timestamp",
        _ => "value of another type",
    }
}
