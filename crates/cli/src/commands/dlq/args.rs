//! Arguments shared by the `conveyor dlq` subcommands, parsed into the runtime's types.

use chrono::{DateTime, Duration, Utc};
use clap::Args;
use conveyor::DeadLetterKind;
use conveyor::dead_letter::Filter;
use uuid::Uuid;

/// Conditions on which dead letters a command applies to; all must hold.
#[derive(Debug, Clone, Args)]
pub(crate) struct FilterArgs {
    /// Event type pattern: `order.created`, `order.*`, `#.cancelled`.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// malformed, schema, unknown-type, forbidden-source, permanent or retries-exhausted.
    #[arg(long, value_parser = parse_kind)]
    error_kind: Option<DeadLetterKind>,
    /// Text the error contains (case-insensitive).
    #[arg(long)]
    error_contains: Option<String>,
    /// Failed at or after: RFC 3339 (2026-11-26T08:00:00Z) or an age (30m, 2h, 7d).
    #[arg(long, value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Failed at or before: RFC 3339 or an age.
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// The flow (saga) id.
    #[arg(long)]
    correlation_id: Option<Uuid>,
    /// One event's id.
    #[arg(long)]
    id: Option<Uuid>,
    /// A failure fingerprint from `conveyor dlq groups`.
    #[arg(long, value_parser = parse_group)]
    group: Option<String>,
}

impl FilterArgs {
    pub(crate) fn to_filter(&self) -> Filter {
        Filter {
            event_type: self.event_type.clone(),
            error_kind: self.error_kind,
            error_contains: self.error_contains.clone(),
            since: self.since,
            until: self.until,
            correlation_id: self.correlation_id.map(|id| id.to_string()),
            id: self.id.map(|id| id.to_string()),
            group: self.group.clone(),
        }
    }
}

fn parse_kind(text: &str) -> Result<DeadLetterKind, String> {
    DeadLetterKind::parse(text).ok_or_else(|| {
        let known: Vec<_> = DeadLetterKind::ALL
            .iter()
            .map(|kind| kind.as_str())
            .collect();
        format!(
            "unknown error kind {text:?}; expected one of {}",
            known.join(", ")
        )
    })
}

fn parse_group(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a fingerprint: `conveyor dlq groups` lists them (12 hex digits)"
        ))
    }
}

/// RFC 3339, or an age counted back from now: `45s`, `30m`, `2h`, `7d`.
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let age = parse_span(text).map_err(|()| {
        format!(
            "{text:?} is neither an RFC 3339 time (2026-11-26T08:00:00Z) nor an age like 30m, 2h or 7d"
        )
    })?;
    Ok(Utc::now() - age)
}

/// `45s`, `30m`, `2h`, `7d`.
fn parse_span(text: &str) -> Result<Duration, ()> {
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or(())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| ())?;
    match unit {
        "s" => Ok(Duration::seconds(number)),
        "m" => Ok(Duration::minutes(number)),
        "h" => Ok(Duration::hours(number)),
        "d" => Ok(Duration::days(number)),
        _ => Err(()),
    }
}

/// A transfer's window, like `10m`: more than zero.
pub(crate) fn parse_window(text: &str) -> Result<std::time::Duration, String> {
    parse_span(text)
        .ok()
        .and_then(|span| span.to_std().ok())
        .filter(|span| !span.is_zero())
        .ok_or_else(|| format!("{text:?} is not a window: give a duration like 90s or 10m"))
}

/// A length of time like `90s`, `30m`, `2h` or `7d`; zero allowed.
pub(crate) fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    parse_span(text)
        .ok()
        .and_then(|span| span.to_std().ok())
        .ok_or_else(|| {
            format!("{text:?} is not a length of time: give one like 90s, 30m, 2h or 7d")
        })
}

/// `200/s` or `200`: messages per second, more than zero.
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<f64>() {
        Ok(rate) if rate >= conveyor::dead_letter::MIN_RATE && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give messages per second, like 200/s (at least {})",
            conveyor::dead_letter::MIN_RATE
        )),
    }
}

/// Service names are lower-case words with dashes, as in `<service>.dlq`.
pub(crate) fn parse_service(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a service name (lower-case letters, digits and dashes, like payments)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times_parse_and_nonsense_is_refused() {
        let two_hours_ago = parse_time("2h").unwrap();
        let age = Utc::now() - two_hours_ago;
        assert!((age.num_seconds() - 7200).abs() < 5);
        assert!(parse_time("2026-11-26T08:00:00Z").is_ok());
        assert!(parse_time("yesterday").unwrap_err().contains("neither"));
        assert!(parse_time("5w").is_err());
        assert_eq!(parse_window("90s"), Ok(std::time::Duration::from_secs(90)));
        assert!(parse_window("0m").is_err());
        assert!(parse_window("soon").is_err());
    }

    #[test]
    fn rates_kinds_groups_and_services_are_checked() {
        assert_eq!(parse_rate("200/s"), Ok(200.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(
            parse_kind("transient")
                .unwrap_err()
                .contains("retries-exhausted")
        );
        assert!(parse_group("abc").is_err());
        assert!(parse_service("payments").is_ok());
        assert!(parse_service("Payments.dlq").is_err());
    }
}
