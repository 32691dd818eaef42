//! Which schema changes break an existing producer or consumer.
//!
//! Producers and consumers of one version file run different releases at once, and both
//! validate, so within a version a change is breaking in whichever direction it narrows:
//! tightened (a field removed, renamed, retyped or made required, an enum value removed, a
//! bound raised or lowered inwards, a pattern, format or const added), a new consumer
//! refuses what older producers (and replayed dead letters) send; loosened (a type widened,
//! an enum value added, a bound moved outwards or dropped, a field no longer required), a new
//! producer sends what older consumers refuse. Not breaking: an optional field added (every
//! schema allows fields it does not list), and a new version file.

use std::collections::BTreeMap;

use serde_json::Value;

/// One breaking change, located by event, version and field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakingChange {
    pub event_type: String,
    pub version: u32,
    /// `items[].quantity`, or empty for the event as a whole.
    pub field: String,
    pub change: String,
}

impl std::fmt::Display for BreakingChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{} v{}: {}", self.event_type, self.version, self.change)
        } else {
            write!(
                f,
                "{} v{}: field `{}`: {}",
                self.event_type, self.version, self.field, self.change
            )
        }
    }
}

/// Schemas keyed by (event type, version).
pub type SchemaSet = BTreeMap<(String, u32), Value>;

/// Every breaking change from `old` to `new`.
pub fn breaking_changes(old: &SchemaSet, new: &SchemaSet) -> Vec<BreakingChange> {
    let mut changes = Vec::new();
    for ((event_type, version), old_schema) in old {
        let mut report = |field: &str, change: String| {
            changes.push(BreakingChange {
                event_type: event_type.clone(),
                version: *version,
                field: field.to_owned(),
                change,
            });
        };
        match new.get(&(event_type.clone(), *version)) {
            None => report(
                "",
                "the schema file was removed; consumers still on it break".into(),
            ),
            Some(new_schema) => compare(old_schema, new_schema, "", &mut report),
        }
    }
    changes
}

fn compare(old: &Value, new: &Value, path: &str, report: &mut impl FnMut(&str, String)) {
    compare_types(old, new, path, report);
    compare_enums(old, new, path, report);
    compare_bounds(old, new, path, report);
    let old_required = string_set(old.get("required"));
    let new_required = string_set(new.get("required"));
    for field in new_required
        .iter()
        .filter(|field| !old_required.contains(field))
    {
        report(
            &join(path, field),
            "became required; producers that leave it out break".into(),
        );
    }
    let still_listed = |field: &str| {
        new.get("properties")
            .and_then(|properties| properties.get(field))
            .is_some()
    };
    for field in old_required
        .iter()
        .filter(|field| !new_required.contains(field) && still_listed(field))
    {
        report(
            &join(path, field),
            "is no longer required; consumers on the older file refuse events without it".into(),
        );
    }
    if let (Some(old_properties), new_properties) = (
        old.get("properties").and_then(Value::as_object),
        new.get("properties").and_then(Value::as_object),
    ) {
        for (name, old_property) in old_properties {
            let field = join(path, name);
            match new_properties.and_then(|properties| properties.get(name)) {
                None => report(
                    &field,
                    "was removed or renamed; consumers that read it break".into(),
                ),
                Some(new_property) => compare(old_property, new_property, &field, report),
            }
        }
    }
    if old.get("additionalProperties") != Some(&Value::Bool(false))
        && new.get("additionalProperties") == Some(&Value::Bool(false))
    {
        report(
            path,
            "no longer allows unlisted fields; producers that send extra fields break".into(),
        );
    }
    if let (Some(old_items), Some(new_items)) = (old.get("items"), new.get("items")) {
        compare(old_items, new_items, &format!("{path}[]"), report);
    }
}

fn compare_types(old: &Value, new: &Value, path: &str, report: &mut impl FnMut(&str, String)) {
    let types = |schema: &Value| -> Option<Vec<String>> {
        match schema.get("type")? {
            Value::String(single) => Some(vec![single.clone()]),
            Value::Array(many) => Some(
                many.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        }
    };
    match (types(old), types(new)) {
        (Some(mut old_types), Some(mut new_types)) => {
            old_types.sort();
            new_types.sort();
            if old_types != new_types {
                // Widening too: integer to number lets a producer send 2.5, which consumers
                // validating with the older file refuse.
                report(
                    path,
                    format!(
                        "type changed from {} to {}",
                        old_types.join("|"),
                        new_types.join("|")
                    ),
                );
            }
        }
        (None, Some(new_types)) => report(
            path,
            format!("was untyped and is now {}", new_types.join("|")),
        ),
        _ => {}
    }
}

fn compare_enums(old: &Value, new: &Value, path: &str, report: &mut impl FnMut(&str, String)) {
    let new_values = new.get("enum").and_then(Value::as_array);
    match (old.get("enum").and_then(Value::as_array), new_values) {
        (Some(old_values), Some(new_values)) => {
            for value in old_values
                .iter()
                .filter(|value| !new_values.contains(value))
            {
                report(path, format!("enum value {value} was removed"));
            }
            for value in new_values
                .iter()
                .filter(|value| !old_values.contains(value))
            {
                report(
                    path,
                    format!("enum value {value} was added; consumers on the older file refuse it"),
                );
            }
        }
        (None, Some(_)) => report(path, "is now limited to an enum".into()),
        (Some(_), None) => report(
            path,
            "is no longer limited to its enum; consumers on the older file refuse new values"
                .into(),
        ),
        (None, None) => {}
    }
    if old.get("const") != new.get("const") {
        match new.get("const") {
            Some(value) => report(path, format!("const is now {value}")),
            None => report(path, "is no longer a const".into()),
        }
    }
}

/// Bounds a larger value tightens.
const LOWER_BOUNDS: [&str; 5] = [
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
/// Bounds a smaller value tightens.
const UPPER_BOUNDS: [&str; 5] = [
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

fn compare_bounds(old: &Value, new: &Value, path: &str, report: &mut impl FnMut(&str, String)) {
    let bounds = LOWER_BOUNDS
        .iter()
        .map(|keyword| (*keyword, true))
        .chain(UPPER_BOUNDS.iter().map(|keyword| (*keyword, false)));
    for (keyword, larger_is_tighter) in bounds {
        let (before, after) = (
            old.get(keyword).and_then(Value::as_f64),
            new.get(keyword).and_then(Value::as_f64),
        );
        let change = match (before, after) {
            (Some(before), Some(after)) if before == after => continue,
            (Some(before), Some(after)) => {
                let moved = if after > before { "raised" } else { "lowered" };
                let looser = (after > before) != larger_is_tighter;
                let consequence = if looser {
                    "; consumers on the older file refuse the new values"
                } else {
                    ""
                };
                format!("{keyword} {moved} from {before} to {after}{consequence}")
            }
            (None, Some(after)) => format!("{keyword} of {after} added"),
            (Some(before), None) => format!(
                "{keyword} of {before} removed; consumers on the older file refuse the new values"
            ),
            (None, None) => continue,
        };
        report(path, change);
    }
    for keyword in ["pattern", "format"] {
        let (before, after) = (old.get(keyword), new.get(keyword));
        if before != after {
            let name =
                |value: Option<&Value>| value.map_or_else(|| "none".to_owned(), Value::to_string);
            report(
                path,
                format!("{keyword} changed from {} to {}", name(before), name(after)),
            );
        }
    }
}

fn string_set(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "type": "object",
            "required": ["order_id", "items"],
            "properties": {
                "order_id": {"type": "string", "format": "uuid"},
                "reason": {"type": "string", "enum": ["a", "b"]},
                "note": {"type": "string", "maxLength": 100},
                "items": {"type": "array", "items": {"type": "object", "required": ["quantity"],
                    "properties": {"quantity": {"type": "integer", "minimum": 1}}}}
            }
        })
    }

    fn check(change: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut new = base();
        change(&mut new);
        let set = |schema: Value| SchemaSet::from([(("order.created".to_owned(), 1), schema)]);
        breaking_changes(&set(base()), &set(new))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn compatible_changes_pass() {
        assert!(check(|_| {}).is_empty());
        assert!(
            check(|s| {
                s["properties"]["coupon"] = json!({"type": "string"});
            })
            .is_empty()
        );
        assert!(
            check(|s| {
                s["description"] = json!("Reworded.");
            })
            .is_empty()
        );
    }

    /// Each of these lets a new producer send what a consumer on the older file refuses.
    #[test]
    fn loosening_a_version_in_place_is_breaking() {
        type Change = fn(&mut Value);
        let cases: [(Change, &str); 6] = [
            (
                |s| s["properties"]["reason"]["enum"] = json!(["a", "b", "c"]),
                "order.created v1: field `reason`: enum value \"c\" was added; consumers on the older file refuse it",
            ),
            (
                |s| s["properties"]["note"]["maxLength"] = json!(500),
                "order.created v1: field `note`: maxLength raised from 100 to 500; consumers on the older file refuse the new values",
            ),
            (
                |s| {
                    s["properties"]["items"]["items"]["properties"]["quantity"]["type"] =
                        json!("number")
                },
                "order.created v1: field `items[].quantity`: type changed from integer to number",
            ),
            (
                |s| {
                    s["properties"]["items"]["items"]["properties"]["quantity"]
                        .as_object_mut()
                        .unwrap()
                        .remove("minimum");
                },
                "order.created v1: field `items[].quantity`: minimum of 1 removed; consumers on the older file refuse the new values",
            ),
            (
                |s| s["required"] = json!(["order_id"]),
                "order.created v1: field `items`: is no longer required; consumers on the older file refuse events without it",
            ),
            (
                |s| {
                    s["properties"]["reason"]
                        .as_object_mut()
                        .unwrap()
                        .remove("enum");
                },
                "order.created v1: field `reason`: is no longer limited to its enum; consumers on the older file refuse new values",
            ),
        ];
        for (change, expected) in cases {
            assert_eq!(check(change), [expected]);
        }
    }

    #[test]
    fn each_kind_of_breaking_change_is_named_with_its_field() {
        let removed = check(|s| {
            s["properties"].as_object_mut().unwrap().remove("reason");
        });
        assert_eq!(
            removed,
            [
                "order.created v1: field `reason`: was removed or renamed; consumers that read it break"
            ]
        );
        let retyped = check(|s| {
            s["properties"]["order_id"]["type"] = json!("integer");
        });
        assert_eq!(
            retyped,
            ["order.created v1: field `order_id`: type changed from string to integer"]
        );
        let required = check(|s| {
            s["required"] = json!(["order_id", "items", "note"]);
        });
        assert_eq!(
            required,
            ["order.created v1: field `note`: became required; producers that leave it out break"]
        );
        let enum_cut = check(|s| {
            s["properties"]["reason"]["enum"] = json!(["a"]);
        });
        assert_eq!(
            enum_cut,
            ["order.created v1: field `reason`: enum value \"b\" was removed"]
        );
        let tightened = check(|s| {
            s["properties"]["items"]["items"]["properties"]["quantity"]["minimum"] = json!(2);
        });
        assert_eq!(
            tightened,
            ["order.created v1: field `items[].quantity`: minimum raised from 1 to 2"]
        );
        let shortened = check(|s| {
            s["properties"]["note"]["maxLength"] = json!(10);
        });
        assert_eq!(
            shortened,
            ["order.created v1: field `note`: maxLength lowered from 100 to 10"]
        );
        let patterned = check(|s| {
            s["properties"]["note"]["pattern"] = json!("^[a-z]+$");
        });
        assert_eq!(patterned.len(), 1);
    }

    #[test]
    fn a_removed_version_file_is_breaking_and_a_new_one_is_not() {
        let old = SchemaSet::from([(("order.created".to_owned(), 1), base())]);
        let mut new = SchemaSet::from([(("order.created".to_owned(), 2), base())]);
        assert_eq!(breaking_changes(&old, &new).len(), 1);
        new.insert(("order.created".to_owned(), 1), base());
        assert!(breaking_changes(&old, &new).is_empty());
    }
}
