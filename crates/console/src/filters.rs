//! The dead-letter filters of the pages' query strings, as the CLI's flags take them: each
//! value checked, and a wrong one named with what it should be.

use conveyor::DeadLetterKind;
use conveyor::dead_letter::Filter;
use serde::{Deserialize, Serialize};

/// The query string's filters; blank fields are unset.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(crate) struct FilterQuery {
    /// Event type pattern: `order.created`, `order.*`, `#.cancelled`.
    #[serde(default, rename = "type")]
    pub(crate) event_type: Option<String>,
    #[serde(default)]
    pub(crate) error_kind: Option<String>,
    #[serde(default)]
    pub(crate) error_contains: Option<String>,
    #[serde(default)]
    pub(crate) correlation_id: Option<String>,
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) group: Option<String>,
}

fn given(value: Option<&String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

impl FilterQuery {
    /// The engine's filter.
    ///
    /// # Errors
    /// The field and why, for a value the filter cannot take.
    pub(crate) fn to_filter(&self) -> Result<Filter, String> {
        let error_kind = match given(self.error_kind.as_ref()) {
            Some(kind) => Some(DeadLetterKind::parse(&kind).ok_or_else(|| {
                let known: Vec<_> = DeadLetterKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("error_kind {kind:?} is not one of {}", known.join(", "))
            })?),
            None => None,
        };
        let group = given(self.group.as_ref());
        if let Some(group) = &group
            && !(group.len() == 12 && group.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!(
                "group {group:?} is not a fingerprint: twelve hex digits, as the groups show"
            ));
        }
        Ok(Filter {
            event_type: given(self.event_type.as_ref()),
            error_kind,
            error_contains: given(self.error_contains.as_ref()),
            since: None,
            until: None,
            correlation_id: given(self.correlation_id.as_ref()),
            id: given(self.id.as_ref()),
            group: group.map(|group| group.to_ascii_lowercase()),
        })
    }

    /// The query string that names these filters again (for links), starting with `&` when
    /// any is set.
    pub(crate) fn to_query(&self) -> String {
        self.set()
            .into_iter()
            .map(|(name, value)| format!("&{name}={}", system::management::percent_encode(&value)))
            .collect()
    }

    /// The filters set, by their query names, trimmed.
    pub(crate) fn set(&self) -> Vec<(&'static str, String)> {
        let pairs = [
            ("type", &self.event_type),
            ("error_kind", &self.error_kind),
            ("error_contains", &self.error_contains),
            ("correlation_id", &self.correlation_id),
            ("id", &self.id),
            ("group", &self.group),
        ];
        pairs
            .into_iter()
            .filter_map(|(name, value)| Some((name, given(value.as_ref())?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_value_is_named_and_blank_ones_are_unset() {
        let query = FilterQuery {
            error_kind: Some("nonsense".to_owned()),
            ..FilterQuery::default()
        };
        assert!(
            query
                .to_filter()
                .unwrap_err()
                .starts_with("error_kind \"nonsense\"")
        );
        let query = FilterQuery {
            group: Some("xyz".to_owned()),
            event_type: Some("  ".to_owned()),
            ..FilterQuery::default()
        };
        assert!(query.to_filter().unwrap_err().starts_with("group \"xyz\""));
        let query = FilterQuery {
            event_type: Some(" order.* ".to_owned()),
            error_kind: Some("schema".to_owned()),
            ..FilterQuery::default()
        };
        let filter = query.to_filter().unwrap();
        assert_eq!(filter.event_type.as_deref(), Some("order.*"));
        assert_eq!(query.to_query(), "&type=order.%2A&error_kind=schema");
    }
}
