//! The schemas, the Rust types and the validation agree: every example survives a round trip
//! through its Rust type unchanged, and both sides name the same fields.

use std::collections::BTreeSet;

use events_schema::inventory::*;
use events_schema::money::{CEILINGS, MAX_PRICE_CENTS, MAX_TOTAL_CENTS};
use events_schema::orders::*;
use events_schema::payments::*;
use events_schema::pickups::*;
use events_schema::products::*;
use events_schema::returns::*;
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
        typed!(OrderDeadlinePassedV1),
        typed!(InventoryReservedV1),
        typed!(InventoryRejectedV1),
        typed!(InventoryReleasedV1),
        typed!(PaymentCapturedV1),
        typed!(PaymentDeclinedV1),
        typed!(PaymentRefundedV1),
        typed!(ShipmentScheduledV1),
        typed!(ShipmentFailedV1),
        typed!(ShipmentCancelledV1),
        typed!(ReturnRequestedV1),
        typed!(ReturnClosedV1),
        typed!(ReturnCancelledV1),
        typed!(ReturnDeadlinePassedV1),
        typed!(ReturnReceivedV1),
        typed!(PickupBookedV1),
        typed!(PickupFailedV1),
        typed!(PickupCancelledV1),
        typed!(InventoryRestockedV1),
        typed!(PaymentReturnRefundedV1),
        typed!(UserRegisteredV2),
        typed!(UserUpdatedV2),
        typed!(ProductCreatedV2),
        typed!(ProductUpdatedV2),
        typed!(OrderCreatedV2),
        typed!(OrderConfirmedV2),
        typed!(InventoryReservedV2),
        typed!(PaymentCapturedV2),
        typed!(PaymentDeclinedV2),
        typed!(PaymentRefundedV2),
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
    // The envelope's files are not events': the newest is the one the contract checks.
    let newest_envelope = on_disk
        .iter()
        .filter(|(name, _)| name == "envelope")
        .map(|(_, version)| *version)
        .max()
        .unwrap();
    let newest =
        std::fs::read_to_string(format!("{dir}/envelope/v{newest_envelope}.json")).unwrap();
    assert_eq!(
        ENVELOPE_SCHEMA, newest,
        "ENVELOPE_SCHEMA is the newest envelope file"
    );
    on_disk.retain(|(name, _)| name != "envelope");
    let cataloged: BTreeSet<_> = SCHEMAS
        .iter()
        .map(|f| (f.event_type.to_owned(), f.version))
        .collect();
    let typed: BTreeSet<_> = typed_events()
        .iter()
        .map(|(t, v, _, _)| ((*t).to_owned(), *v))
        .collect();
    let missing = missing_entries(&on_disk, &cataloged, &typed);
    assert!(
        missing.is_empty(),
        "{}\n(For a new event type, `conveyor new event TYPE --owner SERVICE` writes all of these.)",
        missing.join("\n")
    );
}

/// A schema, with its version, on each side of the guard's comparisons.
type Keys = BTreeSet<(String, u32)>;

/// What is missing between the schema files, the catalog and the Rust types, each with the
/// file and line to add it at.
fn missing_entries(on_disk: &Keys, cataloged: &Keys, typed: &Keys) -> Vec<String> {
    let mut missing = Vec::new();
    for (event_type, version) in on_disk.difference(cataloged) {
        missing.push(format!(
            "events-schema/schemas/{event_type}/v{version}.json is not in the catalog: add `schema!(\"{event_type}\", {version}),` to SCHEMAS at {}",
            line_of("src/catalog.rs", "pub const SCHEMAS")
        ));
    }
    for (event_type, version) in cataloged.difference(on_disk) {
        missing.push(format!(
            "SCHEMAS at {} lists {event_type} v{version}, but events-schema/schemas/{event_type}/v{version}.json does not exist: add the file, or remove the entry",
            line_of("src/catalog.rs", "pub const SCHEMAS")
        ));
    }
    for (event_type, version) in cataloged.difference(typed) {
        missing.push(format!(
            "{event_type} v{version} has a schema but no Rust type in this test's hand-kept list: add `typed!({}),` to typed_events() at {} (the type, with `impl Event` and `impl EventData`, goes in its noun's module of events-schema/src/; a later version with the same fields is one `same_shape_version!`)",
            events_schema::type_name(event_type, *version),
            line_of("tests/contract.rs", "fn typed_events()")
        ));
    }
    for (event_type, version) in typed.difference(cataloged) {
        missing.push(format!(
            "typed_events() at {} lists {event_type} v{version}, which the catalog does not: add its schema file and `schema!(\"{event_type}\", {version}),` to SCHEMAS, or remove the entry",
            line_of("tests/contract.rs", "fn typed_events()")
        ));
    }
    missing
}

/// `events-schema/<file>:<line>` of the first line of `file` holding `marker`: where a
/// missing entry goes.
fn line_of(file: &str, marker: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text
        .lines()
        .position(|line| line.contains(marker))
        .map_or(0, |index| index + 1);
    format!("events-schema/{file}:{line}")
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
        "order.created has no version v7 (known: v1, v2); it is not guessed at"
    );
    assert!(matches!(unknown, Violation::UnknownType { .. }));
    assert!(matches!(mismatched, Violation::MismatchedSchema { .. }));
}

/// `data` with `field` (`price_cents`, or `items[].unit_price_cents` for every item) written
/// as the JSON text `literal`, and read back from text as a consumer reads it: `-0`, `1.0`
/// and `1e3` stay floats, 2^63 an unsigned integer.
fn written_as(data: &Value, field: &str, literal: &str) -> Value {
    let mut data = data.clone();
    set(&mut data, field, json!("__LITERAL__"));
    let text = serde_json::to_string(&data)
        .unwrap()
        .replace("\"__LITERAL__\"", literal);
    serde_json::from_str(&text).unwrap()
}

fn set(data: &mut Value, field: &str, value: Value) {
    match field.split_once("[].") {
        Some((list, rest)) => {
            for item in data[list].as_array_mut().unwrap() {
                set(item, rest, value.clone());
            }
        }
        None => data[field] = value,
    }
}

/// 2^63, one past i64.
const TWO_TO_THE_63: &str = "9223372036854775808";

/// JSON Schema calls `1.0`, `-0`, `-0.0`, `1e3` and 2^63 integers; the Rust types read none
/// of them. The contract refuses them, naming the field, so a consumer dead-letters them as
/// `schema` instead of failing in its handler.
#[test]
fn integers_are_refused_unless_written_as_json_integers_within_i64() {
    let contract = EventContract::new().unwrap();
    let product = serde_json::to_value(ProductUpdatedV1::sample()).unwrap();
    for literal in ["1.0", "-0", "-0.0", "1e3", "2.0e0", TWO_TO_THE_63] {
        let data = written_as(&product, "price_cents", literal);
        assert!(
            serde_json::from_value::<ProductUpdatedV1>(data.clone()).is_err(),
            "{literal}: the Rust type reads it, so this rule is not needed for it"
        );

        let error = contract
            .validate("product.updated", "1", &data)
            .unwrap_err()
            .to_string();

        assert!(
            error.starts_with("product.updated v1 is invalid: /price_cents: "),
            "{literal}: {error}"
        );
        assert!(!error.contains("/version"), "{literal}: {error}");
    }
    let error = contract
        .validate(
            "product.updated",
            "1",
            &written_as(&product, "price_cents", "1.0"),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("1.0 is not written as an integer"),
        "{error}"
    );
    let error = contract
        .validate(
            "product.updated",
            "1",
            &written_as(&product, "price_cents", TWO_TO_THE_63),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("9223372036854775808 is greater than 9223372036854775807"),
        "{error}"
    );
    // Not only money: every field the schema types as integer, in lists too.
    let error = contract
        .validate(
            "product.updated",
            "1",
            &written_as(&product, "version", "2.0"),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/version: 2.0 is not written as an integer"),
        "{error}"
    );
    let order = serde_json::to_value(OrderCreatedV1::sample()).unwrap();
    let error = contract
        .validate(
            "order.created",
            "1",
            &written_as(&order, "items[].quantity", "-0"),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/items/0/quantity: -0.0 is not written as an integer"),
        "{error}"
    );
    // A fraction is the schema's own `type` error, reported once.
    let error = contract
        .validate(
            "product.updated",
            "1",
            &written_as(&product, "price_cents", "1.5"),
        )
        .unwrap_err();
    let Violation::Invalid { errors, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("is not of type \"integer\""),
        "{errors:?}"
    );
    // Integers written as integers pass, as far as i64 goes.
    for literal in ["0", "1", "1450"] {
        contract
            .validate(
                "product.updated",
                "1",
                &written_as(&product, "price_cents", literal),
            )
            .unwrap_or_else(|e| panic!("{literal}: {e}"));
    }
}

/// A NUL is valid JSON and a valid JSON Schema string, but no service's database can store
/// it: the contract refuses it wherever it is, naming the field, so no consumer meets it in
/// its database (found by the system test `agreement`).
#[test]
fn a_string_holding_a_nul_is_refused_wherever_it_is() {
    let contract = EventContract::new().unwrap();
    let mut user = serde_json::to_value(UserRegisteredV1::sample()).unwrap();
    assert!(contract.validate("user.registered", "1", &user).is_ok());
    user["address"]["city"] = json!("Paris\u{0}");

    let error = contract
        .validate("user.registered", "1", &user)
        .unwrap_err()
        .to_string();

    assert!(
        error.starts_with("user.registered v1 is invalid: /address/city: contains a NUL character"),
        "{error}"
    );
    let mut order = serde_json::to_value(OrderCreatedV1::sample()).unwrap();
    order["items"][0]["sku"] = json!("\u{0}");
    let error = contract
        .validate("order.created", "1", &order)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/items/0/sku: contains a NUL character"),
        "{error}"
    );
}

/// The book's money ceilings (Call the HTTP API), which the v1 schemas do not carry as `maximum`, hold for
/// every money field (the list is `money::CEILINGS`): the ceiling passes, one more is
/// refused, and so is 2^63 - 1; below zero the schemas' `minimum` refuses.
#[test]
fn every_money_field_is_held_to_its_ceiling() {
    let contract = EventContract::new().unwrap();
    assert_eq!(CEILINGS.len(), 11, "{CEILINGS:?}");
    for ceiling in CEILINGS {
        let (_, _, _, sample) = typed_events()
            .into_iter()
            .find(|(t, v, _, _)| *t == ceiling.event_type && *v == ceiling.version)
            .unwrap_or_else(|| panic!("{ceiling:?} has no Rust type"));
        let data = sample();
        let version = ceiling.version.to_string();
        let check = |value: i64| {
            let data = written_as(&data, ceiling.field, &value.to_string());
            contract.validate(ceiling.event_type, &version, &data)
        };

        check(ceiling.max).unwrap_or_else(|e| panic!("{ceiling:?}: the ceiling itself: {e}"));
        for above in [ceiling.max + 1, i64::MAX] {
            let error = check(above).unwrap_err().to_string();
            let expected = format!("{above} is greater than the ceiling of {}", ceiling.max);
            assert!(error.contains(&expected), "{ceiling:?}: {error}");
        }
        let error = check(-1).unwrap_err().to_string();
        assert!(
            error.contains("-1 is less than the minimum of 0"),
            "{ceiling:?}: {error}"
        );
    }
    let product = serde_json::to_value(ProductUpdatedV1::sample()).unwrap();
    for (literal, allowed) in [
        ("10000000000", true),
        ("10000000001", false),
        ("1000000000001", false),
        ("9223372036854775807", false),
        ("-1", false),
    ] {
        let data = written_as(&product, "price_cents", literal);
        let checked = contract.validate("product.updated", "1", &data);
        assert_eq!(checked.is_ok(), allowed, "{literal}: {checked:?}");
    }
    assert_eq!(MAX_PRICE_CENTS, 10_000_000_000);
    let order = serde_json::to_value(OrderCreatedV1::sample()).unwrap();
    let price = (MAX_PRICE_CENTS + 1).to_string();
    let error = contract
        .validate(
            "order.created",
            "1",
            &written_as(&order, "items[].unit_price_cents", &price),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/items/0/unit_price_cents: 10000000001 is greater than"),
        "{error}"
    );
    let total = (MAX_TOTAL_CENTS + 1).to_string();
    let error = contract
        .validate(
            "order.created",
            "1",
            &written_as(&order, "total_cents", &total),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("/total_cents: 1000000000001 is greater than the ceiling of 1000000000000"),
        "{error}"
    );
}

/// A consumer checks an envelope as it reads it from bytes: a `-0` there is a float.
#[test]
fn the_consumers_check_refuses_what_the_rust_types_cannot_read() {
    use conveyor::Contract;
    let contract = EventContract::new().unwrap();
    let mut event = events_schema::envelope("inventory", &ProductUpdatedV1::sample());
    event.data = json!("__DATA__");
    let text = String::from_utf8(event.to_bytes()).unwrap();
    for literal in ["-0", "1.0", "1e3", TWO_TO_THE_63, "1000000000001"] {
        let data = format!(
            r#"{{"sku": "MUG-1", "name": "Mug", "price_cents": {literal},
                "currency": "EUR", "version": 2}}"#
        );
        let body = text.replace("\"__DATA__\"", &data);
        let envelope = conveyor::Envelope::from_bytes(body.as_bytes()).unwrap();

        let error = contract.check(&envelope).unwrap_err().message;

        assert!(error.contains("/price_cents: "), "{literal}: {error}");
    }
}

/// The book's ingest example (Call the HTTP API), as a producing system outside Rust would send it.
fn outside_event(data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": "6f0f7b3e-8d1c-4c5e-9f57-2b7e1d0c9a11",
        "source": "/services/warehouse-feed",
        "type": "product.updated",
        "time": "2026-11-27T08:00:00Z",
        "datacontenttype": "application/json",
        "correlationid": "6f0f7b3e-8d1c-4c5e-9f57-2b7e1d0c9a11",
        "data": data,
    })
}

/// The fields a whole event is refused for, sorted.
fn refused_fields(contract: &EventContract, event: &Value) -> Vec<String> {
    let mut fields: Vec<String> = contract
        .validate_event(event)
        .err()
        .map(|refusal| refusal.violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    fields.sort();
    fields.dedup();
    fields
}

#[test]
fn a_whole_event_is_checked_envelope_and_data_naming_each_field() {
    let contract = EventContract::new().unwrap();
    let data = serde_json::to_value(ProductUpdatedV1::sample()).unwrap();
    let event = outside_event(data.clone());
    contract.validate_event(&event).unwrap();
    let runtime = events_schema::envelope("inventory", &ProductUpdatedV1::sample());
    let runtime = serde_json::to_value(runtime).unwrap();
    contract.validate_event(&runtime).unwrap();

    let mut bad_source = event.clone();
    bad_source["source"] = json!("warehouse-feed");
    let refusal = contract.validate_event(&bad_source).unwrap_err();
    assert_eq!(refused_fields(&contract, &bad_source), ["source"]);
    assert!(
        refusal
            .to_string()
            .contains("source: \"warehouse-feed\" does not match \"^/(services/"),
        "{refusal}"
    );
    let mut no_specversion = event.clone();
    no_specversion
        .as_object_mut()
        .unwrap()
        .remove("specversion");
    assert_eq!(refused_fields(&contract, &no_specversion), ["specversion"]);
    let mut upper_case_id = event.clone();
    upper_case_id["id"] = json!("6F0F7B3E-8D1C-4C5E-9F57-2B7E1D0C9A11");
    assert_eq!(refused_fields(&contract, &upper_case_id), ["id"]);

    let refused = [
        "1.0",
        "-0",
        "-0.0",
        "1e3",
        TWO_TO_THE_63,
        "9223372036854775807",
        "1000000000001",
        "-1",
    ];
    for literal in refused {
        let event = outside_event(written_as(&data, "price_cents", literal));
        assert_eq!(
            refused_fields(&contract, &event),
            ["data.price_cents"],
            "{literal}"
        );
    }
    let mut missing_price = data.clone();
    missing_price.as_object_mut().unwrap().remove("price_cents");
    assert_eq!(
        refused_fields(&contract, &outside_event(missing_price)),
        ["data.price_cents"]
    );
    let order = serde_json::to_value(OrderCreatedV1::sample()).unwrap();
    let mut order_event = outside_event(written_as(&order, "items[].quantity", "1.0"));
    order_event["type"] = json!("order.created");
    assert_eq!(
        refused_fields(&contract, &order_event),
        ["data.items[0].quantity"]
    );

    // Everything at once: the envelope's errors and the data's.
    let mut several = outside_event(written_as(&data, "price_cents", "1.0"));
    several["source"] = json!("warehouse-feed");
    several["data"].as_object_mut().unwrap().remove("sku");
    assert_eq!(
        refused_fields(&contract, &several),
        ["data.price_cents", "data.sku", "source"]
    );
    // Which schema the data follows, when the envelope names none that exists.
    let mut unknown = event.clone();
    unknown["type"] = json!("product.deleted");
    assert_eq!(refused_fields(&contract, &unknown), ["type"]);
    let mut future = event.clone();
    future["dataschema"] = json!("events-schema/product.updated/v3");
    assert_eq!(refused_fields(&contract, &future), ["dataschema"]);
    let mut not_an_object = event.clone();
    not_an_object["data"] = json!(5);
    assert_eq!(refused_fields(&contract, &not_an_object), ["data"]);
    assert_eq!(refused_fields(&contract, &json!([1, 2])), [""]);
}

/// v2 of each money event is v1 with the ceilings of `money::CEILINGS` stated as `maximum`,
/// nothing else: v1's type reads every v2 example (so today's handlers take v2 as it is), the
/// schema itself refuses one more than the ceiling, and a v1 ceiling without its v2 is missing.
#[test]
fn each_money_event_has_a_v2_stating_its_ceilings_that_v1_handlers_read() {
    let contract = EventContract::new().unwrap();
    let v2_types: BTreeSet<&str> = SCHEMAS
        .iter()
        .filter(|file| file.version == 2)
        .map(|file| file.event_type)
        .collect();
    let with_ceilings: BTreeSet<&str> = CEILINGS.iter().map(|c| c.event_type).collect();
    assert_eq!(v2_types, with_ceilings);
    for ceiling in CEILINGS {
        let file = events_schema::schema_for(ceiling.event_type, 2).unwrap();
        let v2: Value = serde_json::from_str(file.text).unwrap();
        let v1: Value = serde_json::from_str(
            events_schema::schema_for(ceiling.event_type, 1)
                .unwrap()
                .text,
        )
        .unwrap();
        let mut field = &v2;
        for part in ceiling.field.split('.') {
            field = match part.strip_suffix("[]") {
                Some(list) => &field["properties"][list]["items"],
                None => &field["properties"][part],
            };
        }
        assert_eq!(field["maximum"], json!(ceiling.max), "{ceiling:?}");
        assert_eq!(v1["examples"], v2["examples"], "{}", ceiling.event_type);
        let (_, _, read_as_v1, _) = typed_events()
            .into_iter()
            .find(|(t, v, _, _)| *t == ceiling.event_type && *v == 1)
            .unwrap();
        for example in examples(file.text) {
            read_as_v1(&example).unwrap_or_else(|e| panic!("{}: {e}", ceiling.event_type));
            contract
                .validate(ceiling.event_type, "2", &example)
                .unwrap();
        }
        let validator = jsonschema::validator_for(&v2).unwrap();
        let above = written_as(
            &examples(file.text)[0],
            ceiling.field,
            &(ceiling.max + 1).to_string(),
        );
        assert!(
            !validator.is_valid(&above),
            "{ceiling:?}: the schema alone refuses it"
        );
    }
}

/// The envelope's v2: `dataschema` as the absolute URI CloudEvents asks for, read as the
/// relative reference is (the version is the same), and `source` naming an ingesting client;
/// a URI of another type, or another scheme, is refused naming `dataschema`.
#[test]
fn an_absolute_dataschema_and_a_client_source_are_read_as_v1_envelopes_are() {
    let contract = EventContract::new().unwrap();
    let mut envelope = events_schema::envelope("inventory", &ProductUpdatedV2::sample());
    envelope.dataschema = Some("urn:conveyor:events-schema:product.updated:v2".into());
    assert_eq!(EventContract::version_of(&envelope).unwrap(), "2");
    contract.validate_envelope(&envelope).unwrap();
    let mut event = serde_json::to_value(&envelope).unwrap();
    event["source"] = json!("/clients/client-0123456789abcdef0123456789abcdef");
    assert_eq!(refused_fields(&contract, &event), Vec::<String>::new());

    for (dataschema, source) in [
        (
            "urn:conveyor:events-schema:product.created:v2",
            "/services/inventory",
        ),
        (
            "https://example.com/events-schema/product.updated/v2",
            "/services/inventory",
        ),
        (
            "urn:conveyor:events-schema:product.updated:v2",
            "/clients/../services/users",
        ),
        (
            "urn:conveyor:events-schema:product.updated:v2",
            "/users/someone",
        ),
    ] {
        let mut wrong = event.clone();
        wrong["dataschema"] = json!(dataschema);
        wrong["source"] = json!(source);
        assert!(
            !refused_fields(&contract, &wrong).is_empty(),
            "{dataschema} from {source}"
        );
    }
}
