//! Which dead letters an operator's command applies to.

use chrono::{DateTime, Utc};

use super::letter::DeadLetter;
use crate::consumer::DeadLetterKind;

/// All conditions must hold; an empty filter matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// An AMQP topic pattern: `*` matches one dot-separated word, `#` any number.
    pub event_type: Option<String>,
    /// Why the consumer dead-lettered the message.
    pub error_kind: Option<DeadLetterKind>,
    /// Case-insensitive substring of the error.
    pub error_contains: Option<String>,
    /// Failed at or after this time; a letter with no failure time does not match.
    pub since: Option<DateTime<Utc>>,
    /// Failed at or before this time; a letter with no failure time does not match.
    pub until: Option<DateTime<Utc>>,
    /// The event's correlation id, exactly.
    pub correlation_id: Option<String>,
    /// The event id, exactly.
    pub id: Option<String>,
    /// A fingerprint id from `conveyor dlq groups`.
    pub group: Option<String>,
}

impl Filter {
    /// Whether `letter` meets every condition set.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let type_matches = self.event_type.as_deref().is_none_or(|pattern| {
            letter
                .event_type
                .as_deref()
                .is_some_and(|event_type| topic_matches(pattern, event_type))
        });
        let kind_matches = self
            .error_kind
            .is_none_or(|kind| letter.error_kind.as_deref() == Some(kind.as_str()));
        let error_matches = self.error_contains.as_deref().is_none_or(|needle| {
            letter
                .error
                .as_deref()
                .is_some_and(|error| error.to_lowercase().contains(&needle.to_lowercase()))
        });
        let since_matches = self
            .since
            .is_none_or(|since| letter.failed_at.is_some_and(|at| at >= since));
        let until_matches = self
            .until
            .is_none_or(|until| letter.failed_at.is_some_and(|at| at <= until));
        let correlation_matches = self
            .correlation_id
            .as_deref()
            .is_none_or(|wanted| letter.correlation_id.as_deref() == Some(wanted));
        let id_matches = self
            .id
            .as_deref()
            .is_none_or(|wanted| letter.id.as_deref() == Some(wanted));
        let group_matches = self
            .group
            .as_deref()
            .is_none_or(|wanted| letter.fingerprint().id == wanted);
        type_matches
            && kind_matches
            && error_matches
            && since_matches
            && until_matches
            && correlation_matches
            && id_matches
            && group_matches
    }

    /// The conditions set, for the audit log and summaries.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), serde_json::Value::String(value));
            }
        };
        put("type", self.event_type.clone());
        put(
            "error_kind",
            self.error_kind.map(|kind| kind.as_str().to_owned()),
        );
        put("error_contains", self.error_contains.clone());
        put("since", self.since.map(|at| at.to_rfc3339()));
        put("until", self.until.map(|at| at.to_rfc3339()));
        put("correlation_id", self.correlation_id.clone());
        put("id", self.id.clone());
        put("group", self.group.clone());
        serde_json::Value::Object(map)
    }
}

/// AMQP topic matching: words split on dots, `*` one word, `#` zero or more.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    fn matches(pattern: &[&str], key: &[&str]) -> bool {
        match (pattern.split_first(), key.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                matches(rest, key) || (!key.is_empty() && matches(pattern, &key[1..]))
            }
            (Some((&"*", rest)), Some((_, key_rest))) => matches(rest, key_rest),
            (Some((word, rest)), Some((key_word, key_rest))) => {
                word == key_word && matches(rest, key_rest)
            }
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = routing_key.split('.').collect();
    matches(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_as_rabbitmq_routes() {
        assert!(topic_matches("order.*", "order.created"));
        assert!(!topic_matches("order.*", "order.created.v2"));
        assert!(topic_matches("order.#", "order.created.v2"));
        assert!(topic_matches("#", "payment.captured"));
        assert!(topic_matches("*.cancelled", "order.cancelled"));
        assert!(!topic_matches("*.cancelled", "order.created"));
        assert!(topic_matches("order.created", "order.created"));
    }
}
