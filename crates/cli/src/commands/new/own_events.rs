//! The event types a service outside Conveyor's repository defines in its own crate: a v1
//! schema each under `schemas/`, and `src/events.rs` with their Rust types and
//! `OWN_EVENTS`, which its consumer and outbox check as they check Conveyor's contract.

use super::names::EventName;
use super::templates;

/// `src/events.rs` for `types`, all published by the crate's `SERVICE`.
pub(crate) fn events_rs(service: &str, types: &[EventName]) -> String {
    let mut schemas = String::new();
    let mut code = String::new();
    for name in types {
        schemas.push_str(&format!(
            "        SchemaFile {{\n            event_type: \"{event_type}\",\n            version: 1,\n            text: include_str!(\"../schemas/{event_type}/v1.json\"),\n        }},\n",
            event_type = name.event_type
        ));
        code.push('\n');
        code.push_str(
            &templates::type_code(name, &name.default_description())
                .replace("\nimpl EventData for", "\n#[cfg(test)]\nimpl EventData for"),
        );
    }
    let checks: String = types
        .iter()
        .map(|name| format!("        check::<{}>(&contract);\n", name.struct_name()))
        .collect();
    format!(
        r#"//! The event types the {service} service defines itself, beside Conveyor's contract:
//! a schema each under `schemas/`, and their Rust types. Its consumer and outbox check them
//! as they check Conveyor's, and take them from {service} alone.

use conveyor::Event;
use events_schema::{{OwnEvents, SchemaFile}};
use serde::{{Deserialize, Serialize}};
use uuid::Uuid;

/// Its own types, with their schemas.
pub const OWN_EVENTS: OwnEvents = OwnEvents {{
    publisher: crate::SERVICE,
    schemas: &[
{schemas}    ],
}};

/// A value of the type, for the test that it agrees with its schema.
#[cfg(test)]
trait EventData: Event {{
    fn sample() -> Self;
}}
{code}
#[cfg(test)]
mod tests {{
    use events_schema::EventContract;

    use super::*;

    /// Each type reads its schema's example, and what it writes passes its schema.
    fn check<E: Event + EventData>(contract: &EventContract) {{
        let file = OWN_EVENTS
            .schemas
            .iter()
            .find(|file| file.event_type == E::TYPE && file.version == E::VERSION)
            .expect("every own type has its schema in OWN_EVENTS");
        let schema: serde_json::Value = serde_json::from_str(file.text).unwrap();
        let example = schema["examples"][0].clone();
        let read: E = serde_json::from_value(example).unwrap();
        for value in [read, E::sample()] {{
            let data = serde_json::to_value(&value).unwrap();
            let version = E::VERSION.to_string();
            contract.validate(E::TYPE, &version, &data).unwrap();
        }}
    }}

    #[test]
    fn each_own_type_agrees_with_its_schema() {{
        let contract = EventContract::with_own_events(OWN_EVENTS).unwrap();
{checks}    }}
}}
"#
    )
}

/// The v1 schema of `name`, with a documented example.
pub(crate) fn schema(name: &EventName) -> String {
    templates::schema(name, &name.default_description())
}
