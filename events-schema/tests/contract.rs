//! The schemas, the Rust types and the validation agree: every example survives a round trip
//! through its Rust type unchanged, and both sides name the same fields.

use std::collections::BTreeSet;

use events_schema::inventory::*;
use events_schema::orders::*;
use events_schema::payments::*;
use events_schema::products::*;
use events_schema::shipping::*;
use events_schema::users::*;
use events_schema::{ENVELOPE_SCHEMA, Event, EventContract, EventData, SCHEMAS, Violation};
use serde_json::{Value, json};

/// Reads data into the Rust type and writes it back: what the type keeps of it.
type RoundTrip = fn(&Value) -> Result<Value, String>;
type Sample = fn() -> Value;

macro_rules! typed {
    ($event:ty) => {
        (
            <$event>::TYPE,
            <$event>::VERSION,
            (|data: &Value| {
                serde_json::from_value::<$event>(data.clone())
                    .and_then(serde_json::to_value)
                    .map_err(|e| e.to_string())
            }) as RoundTrip,
            (|| serde_json::to_value(<$event>::sample()).unwrap()) as Sample,
        )
    };
}

fn typed_events() -> Vec<(&'static str, u32, RoundTrip, Sample)> {
    vec![
        typed!(UserRegisteredV1),
        typed!(UserUpdatedV1),
        typed!(UserDeactivatedV1),
        typed!(ProductCreatedV1),
        typed!(ProductUpdatedV1),
        typed!(OrderCreatedV1),
        typed!(OrderConfirmedV1),
        typed!(OrderCancelledV1),
        typed!(InventoryReservedV1),
        typed!(InventoryRejectedV1),
        typed!(InventoryReleasedV1),
        typed!(PaymentCapturedV1),
        typed!(PaymentDeclinedV1),
        typed!(PaymentRefundedV1),
        typed!(ShipmentScheduledV1),
        typed!(ShipmentFailedV1),
        typed!(ShipmentCancelledV1),
    ]
}

fn examples(text: &str) -> Vec<Value> {
    let schema: Value = serde_json::from_str(text).unwrap();
    schema["examples"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_schema_file_is_in_the_catalog_and_has_a_rust_type() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let event_type = entry.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().into_owned();
            let version: u32 = name
                .trim_start_matches('v')
                .trim_end_matches(".json")
                .parse()
                .unwrap();
            on_disk.insert((event_type.clone(), version));
        }
    }
    on_disk.remove(&("envelope".to_owned(), 1));
    let cataloged: BTreeSet<_> = SCHEMAS
        .iter()
        .map(|f| (f.event_type.to_owned(), f.version))
        .collect();
    let typed: BTreeSet<_> = typed_events()
        .iter()
        .map(|(t, v, _, _)| ((*t).to_owned(), *v))
        .collect();
    assert_eq!(on_disk, cataloged, "schemas/ and the catalog differ");
    assert_eq!(cataloged, typed, "the catalog and the Rust types differ");
}

#[test]
fn every_schema_has_a_description_and_an_example_its_rust_type_reads() {
    let contract = EventContract::new().unwrap();
    for (event_type, version, decode, _) in typed_events() {
        let file = events_schema::schema_for(event_type, version).unwrap();
        let schema: Value = serde_json::from_str(file.text).unwrap();
        assert!(
            schema["description"].as_str().is_some_and(|d| d.len() > 20),
            "{event_type} needs a description"
        );
        let examples = examples(file.text);
        assert!(
            !examples.is_empty(),
            "{event_type} v{version} has no example"
        );
        for example in examples {
            let kept = decode(&example)
                .unwrap_or_else(|e| panic!("{event_type} example does not fit the Rust type: {e}"));
            // A field the type does not know (renamed on one side) would be dropped here:
            // the schema allows extra fields and serde ignores unknown ones, so nothing else
            // would notice.
            assert_eq!(
                kept, example,
                "{event_type} v{version}: the Rust type does not keep its example as it is"
            );
            contract
                .validate(event_type, &version.to_string(), &example)
                .unwrap_or_else(|e| panic!("{event_type} example breaks its own schema: {e}"));
        }
    }
}

/// The path of field `name` inside `path`.
fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The field paths a schema declares (`items[].sku`), through objects and arrays.
fn declared_fields(schema: &Value, path: &str, into: &mut BTreeSet<String>) {
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let field = child(path, name);
            into.insert(field.clone());
            declared_fields(property, &field, into);
        }
    }
    if schema.get("items").is_some() {
        declared_fields(&schema["items"], &format!("{path}[]"), into);
    }
}

/// The field paths present in data, named as `declared_fields` names them.
fn present_fields(data: &Value, path: &str, into: &mut BTreeSet<String>) {
    match data {
        Value::Object(fields) => {
            for (name, value) in fields {
                let field = child(path, name);
                into.insert(field.clone());
                present_fields(value, &field, into);
            }
        }
        Value::Array(items) => {
            for item in items {
                present_fields(item, &format!("{path}[]"), into);
            }
        }
        _ => {}
    }
}

/// With the round trip of every example, this closes the gap through which a renamed
/// optional field would pass: every field the schema declares is shown by an example (so a
/// rename on the Rust side drops it there), and every field the Rust type writes is declared.
#[test]
fn the_schemas_and_the_rust_types_name_the_same_fields() {
    for (event_type, version, _, sample) in typed_events() {
        let file = events_schema::schema_for(event_type, version).unwrap();
        let schema: Value = serde_json::from_str(file.text).unwrap();
        let mut declared = BTreeSet::new();
        declared_fields(&schema, "", &mut declared);
        let mut shown = BTreeSet::new();
        for example in examples(file.text) {
            present_fields(&example, "", &mut shown);
        }
        let mut written = BTreeSet::new();
        present_fields(&sample(), "", &mut written);
        let unshown: Vec<_> = declared.difference(&shown).collect();
        assert!(
            unshown.is_empty(),
            "{event_type} v{version}: no example shows {unshown:?}"
        );
        let undeclared: Vec<_> = written.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{event_type} v{version}: the Rust type writes {undeclared:?}, which the schema does not declare"
        );
    }
}

#[test]
fn every_rust_type_serializes_to_data_its_schema_accepts() {
    let contract = EventContract::new().unwrap();
    for (event_type, version, decode, sample) in typed_events() {
        let data = sample();
        contract
            .validate(event_type, &version.to_string(), &data)
            .unwrap_or_else(|e| panic!("{event_type}'s Rust sample breaks the schema: {e}"));
        decode(&data).unwrap();
    }
}

#[test]
fn the_runtime_envelope_matches_the_envelope_schema() {
    let schema: Value = serde_json::from_str(ENVELOPE_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let envelope = events_schema::envelope("orders", &OrderCreatedV1::sample()).with_subject("o-1");
    let as_json = serde_json::to_value(&envelope).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&as_json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for example in examples(ENVELOPE_SCHEMA) {
        let parsed =
            conveyor::Envelope::from_bytes(&serde_json::to_vec(&example).unwrap()).unwrap();
        assert_eq!(parsed.event_type, "order.created");
    }
}

#[test]
fn invalid_data_is_refused_naming_the_field() {
    let contract = EventContract::new().unwrap();
    let mut order = serde_json::to_value(OrderCreatedV1::sample()).unwrap();
    order["items"][0]["quantity"] = json!(0);
    order.as_object_mut().unwrap().remove("currency");

    let error = contract
        .validate("order.created", "1", &order)
        .unwrap_err()
        .to_string();

    assert!(error.contains("order.created v1 is invalid"), "{error}");
    assert!(
        error.contains("/items/0/quantity: 0 is less than the minimum of 1"),
        "{error}"
    );
    assert!(
        error.contains("\"currency\" is a required property"),
        "{error}"
    );
}

#[test]
fn closed_lists_uuids_and_currencies_are_enforced() {
    let contract = EventContract::new().unwrap();
    let mut cancelled = serde_json::to_value(OrderCancelledV1::sample()).unwrap();
    cancelled["reason"] = json!("bored");
    assert!(
        contract
            .validate("order.cancelled", "1", &cancelled)
            .unwrap_err()
            .to_string()
            .contains("/reason")
    );
    let mut captured = serde_json::to_value(PaymentCapturedV1::sample()).unwrap();
    captured["currency"] = json!("euro");
    captured["order_id"] = json!("not-a-uuid");
    let error = contract
        .validate("payment.captured", "1", &captured)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/currency") && error.contains("/order_id"),
        "{error}"
    );
}

#[test]
fn unknown_versions_and_types_are_refused_with_a_clear_reason() {
    let contract = EventContract::new().unwrap();
    let data = serde_json::to_value(OrderCreatedV1::sample()).unwrap();
    let mut envelope = events_schema::envelope("orders", &OrderCreatedV1::sample());
    envelope.dataschema = Some("events-schema/order.created/v7".into());

    let version = contract.validate_envelope(&envelope).unwrap_err();
    let unknown = contract.validate("order.shipped", "1", &data).unwrap_err();
    envelope.dataschema = Some("events-schema/payment.captured/v1".into());
    let mismatched = contract.validate_envelope(&envelope).unwrap_err();

    assert_eq!(
        version.to_string(),
        "order.created has no version v7 (known: v1); it is not guessed at"
    );
    assert!(matches!(unknown, Violation::UnknownType { .. }));
    assert!(matches!(mismatched, Violation::MismatchedSchema { .. }));
}
