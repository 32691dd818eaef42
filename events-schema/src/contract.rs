//! Validation of an event's data against the schema of its type and version, and of a whole
//! event (its envelope too) as it arrives from outside the Rust producers.
//!
//! Beyond what JSON Schema checks, two rules close the gap between the schemas and the Rust
//! types that read the events:
//!
//! - every number a schema types as `integer` is written as a JSON integer literal within
//!   i64. JSON Schema calls `1.0`, `-0`, `1e3` and 2^63 integers; serde reads none of them
//!   into an `i64`, so without this rule a consumer would take such an event in and fail in
//!   its handler instead of refusing it as `schema`;
//! - money fields stay under their ceilings ([`crate::money::CEILINGS`]), which the v1
//!   schemas do not state.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use conveyor::{Contract, ContractViolation, Envelope};
use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use serde_json::{Number, Value};

use crate::catalog::{ENVELOPE_SCHEMA, SCHEMAS, SchemaFile};

/// Why the contract cannot be made; caught by the tests of the crate that has the schema.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("schema {event_type} v{version} is not a valid JSON Schema: {message}")]
    Invalid {
        event_type: String,
        version: u32,
        message: String,
    },
    #[error(
        "{publisher} defines {event_type} v{version} as its own, but the contract has it already: give the service's own type a name the contract does not use"
    )]
    Taken {
        publisher: String,
        event_type: String,
        version: u32,
    },
}

/// Event types a service defines in its own crate, outside the catalog (a team's service
/// beside Conveyor's): their schemas, and the one service that publishes them. Its consumer
/// and outbox check them with [`EventContract::with_own_events`].
#[derive(Debug, Clone, Copy)]
pub struct OwnEvents {
    pub publisher: &'static str,
    pub schemas: &'static [SchemaFile],
}

/// Why an event breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("unknown event type {event_type:?}: no schema in events-schema")]
    UnknownType { event_type: String },
    #[error("{event_type} has no version {version} (known: {known}); it is not guessed at")]
    UnknownVersion {
        event_type: String,
        version: String,
        known: String,
    },
    #[error(
        "dataschema {dataschema:?} does not name {event_type}: expected urn:conveyor:events-schema:{event_type}:v<N> (or events-schema/{event_type}/v<N>)"
    )]
    MismatchedSchema {
        event_type: String,
        dataschema: String,
    },
    #[error("{event_type} v{version} is invalid: {}", errors.join("; "))]
    Invalid {
        event_type: String,
        version: u32,
        /// One per problem: the field's JSON pointer and what is wrong with it.
        errors: Vec<String>,
    },
}

/// One field of a whole event that breaks the contract, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldViolation {
    /// The field as a dotted path from the envelope: `source`, `specversion`,
    /// `data.price_cents`, `data.items[0].quantity`; empty for the event as a whole.
    pub field: String,
    /// What is wrong with it: `"x" does not match "^/services/[a-z][a-z0-9-]*$"`.
    pub rule: String,
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.rule)
        } else {
            write!(f, "{}: {}", self.field, self.rule)
        }
    }
}

/// Why a whole event (envelope and data) breaks the contract: every field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventViolations {
    pub violations: Vec<FieldViolation>,
}

impl fmt::Display for EventViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event breaks the contract: ")?;
        for (index, violation) in self.violations.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EventViolations {}

/// One step from a schema's root to a place inside its data.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The property of that name.
    Field(String),
    /// Every item of a list.
    EachItem,
}

/// A place in an event's data that its schema types as `integer`.
struct IntegerField {
    steps: Vec<Step>,
    /// Its money ceiling, from [`crate::money::CEILINGS`].
    ceiling: Option<i64>,
}

/// One schema of the contract, compiled, and where its data holds integers.
struct Compiled {
    validator: jsonschema::Validator,
    integers: Vec<IntegerField>,
}

/// Every schema of the contract, compiled once.
pub struct EventContract {
    schemas: HashMap<(String, u32), Compiled>,
    envelope: jsonschema::Validator,
    own: Option<OwnEvents>,
}

impl EventContract {
    /// Compiles every schema in the catalog, and the envelope's.
    ///
    /// # Errors
    /// [`ContractError`] naming a schema that does not compile.
    pub fn new() -> Result<Self, ContractError> {
        let mut schemas = HashMap::new();
        for file in SCHEMAS {
            schemas.insert((file.event_type.to_owned(), file.version), compile(file)?);
        }
        let envelope = compile(&SchemaFile {
            event_type: "envelope",
            version: 1,
            text: ENVELOPE_SCHEMA,
        })?
        .validator;
        Ok(Self {
            schemas,
            envelope,
            own: None,
        })
    }

    /// The catalog's schemas and `own`'s, whose types only `own.publisher` may publish.
    ///
    /// # Errors
    /// [`ContractError`] naming a schema that does not compile, or an own type and version
    /// the catalog has already.
    pub fn with_own_events(own: OwnEvents) -> Result<Self, ContractError> {
        let mut contract = Self::new()?;
        for file in own.schemas {
            let key = (file.event_type.to_owned(), file.version);
            if contract.schemas.contains_key(&key)
                || crate::publishers::owner_of(file.event_type).is_some()
            {
                return Err(ContractError::Taken {
                    publisher: own.publisher.to_owned(),
                    event_type: file.event_type.to_owned(),
                    version: file.version,
                });
            }
            contract.schemas.insert(key, compile(file)?);
        }
        contract.own = Some(own);
        Ok(contract)
    }

    /// The contract shared by the whole process.
    ///
    /// # Errors
    /// As [`EventContract::new`], on first use.
    pub fn shared() -> Result<Arc<Self>, ContractError> {
        static SHARED: OnceLock<Arc<EventContract>> = OnceLock::new();
        if let Some(contract) = SHARED.get() {
            return Ok(Arc::clone(contract));
        }
        let contract = Arc::new(Self::new()?);
        Ok(Arc::clone(SHARED.get_or_init(|| contract)))
    }

    /// The version an envelope claims through `dataschema` (absent means 1).
    ///
    /// # Errors
    /// [`Violation::MismatchedSchema`] when `dataschema` names another type or no version.
    pub fn version_of(envelope: &Envelope) -> Result<String, Violation> {
        version_in(&envelope.event_type, envelope.dataschema.as_deref())
    }

    /// Checks `data` against the schema of `event_type` at `version`: the schema itself, then
    /// that every number the schema types as `integer` is written as a JSON integer literal
    /// within i64 (not `1.0`, `-0`, `1e3` or 2^63), that money fields are within their
    /// ceilings ([`crate::money::CEILINGS`]), and that no string holds a NUL character.
    ///
    /// # Errors
    /// [`Violation`] saying which field is wrong, or that the type or version is unknown.
    pub fn validate(&self, event_type: &str, version: &str, data: &Value) -> Result<(), Violation> {
        let (number, problems) = self.problems(event_type, version, data)?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Violation::Invalid {
                event_type: event_type.to_owned(),
                version: number,
                errors: problems.iter().map(Problem::listed).collect(),
            })
        }
    }

    /// Checks an envelope's data against the schema its type and `dataschema` name.
    ///
    /// # Errors
    /// As [`EventContract::validate`].
    pub fn validate_envelope(&self, envelope: &Envelope) -> Result<(), Violation> {
        let version = Self::version_of(envelope)?;
        self.validate(&envelope.event_type, &version, &envelope.data)
    }

    /// Checks a whole event as it arrives from outside (HTTP ingest), before anything reads
    /// it: the envelope against `schemas/envelope/v1.json`, and, when the envelope says which
    /// schema its data follows, the data as [`EventContract::validate`] checks it. Every
    /// field at fault is named, from the envelope's root (`source`, `data.price_cents`).
    ///
    /// # Errors
    /// [`EventViolations`] listing each field and the rule it breaks.
    pub fn validate_event(&self, event: &Value) -> Result<(), EventViolations> {
        let mut violations: Vec<FieldViolation> = self
            .envelope
            .iter_errors(event)
            .map(|error| Problem::of(&error).into_field(""))
            .collect();
        let event_type = event.get("type").and_then(Value::as_str);
        // Absent means v1; anything but a string is the envelope's own error above.
        let dataschema = match event.get("dataschema") {
            None => Some(None),
            Some(Value::String(dataschema)) => Some(Some(dataschema.as_str())),
            Some(_) => None,
        };
        // Data that is not an object is the envelope's own error above.
        let data = event.get("data").filter(|data| data.is_object());
        if let (Some(event_type), Some(dataschema), Some(data)) = (event_type, dataschema, data) {
            let checked = version_in(event_type, dataschema)
                .and_then(|version| self.problems(event_type, &version, data));
            match checked {
                Ok((_, problems)) => violations.extend(
                    problems
                        .into_iter()
                        .map(|problem| problem.into_field("data")),
                ),
                Err(violation) => {
                    let field = match violation {
                        Violation::UnknownType { .. } => "type",
                        Violation::UnknownVersion { .. } | Violation::MismatchedSchema { .. } => {
                            "dataschema"
                        }
                        Violation::Invalid { .. } => "data",
                    };
                    violations.push(FieldViolation {
                        field: field.to_owned(),
                        rule: violation.to_string(),
                    });
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(EventViolations { violations })
        }
    }

    /// What is wrong with `data` as `event_type` at `version`, with the version's number.
    fn problems(
        &self,
        event_type: &str,
        version: &str,
        data: &Value,
    ) -> Result<(u32, Vec<Problem>), Violation> {
        let compiled = version.parse::<u32>().ok().and_then(|number| {
            self.schemas
                .get(&(event_type.to_owned(), number))
                .map(|compiled| (number, compiled))
        });
        // The known versions are only needed to explain a miss; hits skip the scan.
        let Some((number, compiled)) = compiled else {
            let known: Vec<String> = SCHEMAS
                .iter()
                .filter(|file| file.event_type == event_type)
                .map(|file| format!("v{}", file.version))
                .collect();
            if known.is_empty() {
                return Err(Violation::UnknownType {
                    event_type: event_type.to_owned(),
                });
            }
            return Err(Violation::UnknownVersion {
                event_type: event_type.to_owned(),
                version: format!("v{version}"),
                known: known.join(", "),
            });
        };
        let mut problems: Vec<Problem> = compiled
            .validator
            .iter_errors(data)
            .map(|error| Problem::of(&error))
            .collect();
        for field in &compiled.integers {
            let mut found = Vec::new();
            numbers_at(data, &field.steps, String::new(), &mut found);
            for (at, number) in found {
                if let Some(message) = integer_rule(number, field.ceiling) {
                    problems.push(Problem {
                        at,
                        missing: None,
                        message,
                    });
                }
            }
        }
        strings_with_nul(data, String::new(), &mut problems);
        Ok((number, problems))
    }
}

/// Every string in `data` holding a NUL character: valid JSON, but no service can store it
/// (PostgreSQL's text refuses U+0000), so the contract refuses it before any database does.
fn strings_with_nul(data: &Value, at: String, problems: &mut Vec<Problem>) {
    match data {
        Value::String(text) if text.contains('\0') => problems.push(Problem {
            at,
            missing: None,
            message: "contains a NUL character (U+0000), which no service can store".to_owned(),
        }),
        Value::Object(fields) => {
            for (name, value) in fields {
                let escaped = name.replace('~', "~0").replace('/', "~1");
                strings_with_nul(value, format!("{at}/{escaped}"), problems);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                strings_with_nul(item, format!("{at}/{index}"), problems);
            }
        }
        _ => {}
    }
}

impl Contract for EventContract {
    fn check(&self, envelope: &Envelope) -> Result<(), ContractViolation> {
        self.validate_envelope(envelope)
            .map_err(|violation| ContractViolation::new(violation.to_string()))
    }

    fn publishers(&self, event_type: &str) -> Vec<&'static str> {
        let own = self
            .own
            .filter(|own| own.schemas.iter().any(|file| file.event_type == event_type));
        match own {
            Some(own) => vec![own.publisher],
            None => crate::publishers::publishers_of(event_type),
        }
    }
}

/// The version `dataschema` names for `event_type` (absent means 1).
fn version_in(event_type: &str, dataschema: Option<&str>) -> Result<String, Violation> {
    let Some(dataschema) = dataschema else {
        return Ok("1".to_owned());
    };
    let mismatched = || Violation::MismatchedSchema {
        event_type: event_type.to_owned(),
        dataschema: dataschema.to_owned(),
    };
    // The absolute URI CloudEvents asks for, or the relative reference v1 envelopes carry.
    let absolute = format!("urn:conveyor:events-schema:{event_type}:v");
    let relative = format!("events-schema/{event_type}/v");
    let version = dataschema
        .strip_prefix(&absolute)
        .or_else(|| dataschema.strip_prefix(&relative))
        .ok_or_else(mismatched)?;
    if version.is_empty() {
        return Err(mismatched());
    }
    Ok(version.to_owned())
}

/// One thing wrong inside a validated document.
struct Problem {
    /// The JSON pointer of the value at fault; empty for the document itself.
    at: String,
    /// For a required property that is missing, its name: the field it is about is that
    /// property of the value at `at`.
    missing: Option<String>,
    message: String,
}

impl Problem {
    fn of(error: &jsonschema::ValidationError<'_>) -> Self {
        let missing = match error.kind() {
            ValidationErrorKind::Required { property } => property.as_str().map(str::to_owned),
            _ => None,
        };
        Self {
            at: error.instance_path().to_string(),
            missing,
            message: error.to_string(),
        }
    }

    /// As [`Violation::Invalid`] lists it: `/items/0/quantity: 0 is less than the minimum of 1`.
    fn listed(&self) -> String {
        let at = if self.at.is_empty() {
            "(data)"
        } else {
            self.at.as_str()
        };
        format!("{at}: {}", self.message)
    }

    /// The field it is about as a dotted path under `prefix` (`data.items[0].quantity`).
    fn into_field(self, prefix: &str) -> FieldViolation {
        let mut field = prefix.to_owned();
        for segment in self.at.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            let index = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
            if index && !field.is_empty() {
                field.push('[');
                field.push_str(&segment);
                field.push(']');
            } else {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(&segment);
            }
        }
        if let Some(missing) = self.missing {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&missing);
        }
        FieldViolation {
            field,
            rule: self.message,
        }
    }
}

/// What is wrong with `number` where the schema says `integer`, if anything.
fn integer_rule(number: &Number, ceiling: Option<i64>) -> Option<String> {
    if let Some(value) = number.as_i64() {
        return ceiling.filter(|max| value > *max).map(|max| {
            format!("{value} is greater than the ceiling of {max} (events_schema::money)")
        });
    }
    if number.is_u64() {
        return Some(format!(
            "{number} is greater than {}, the largest integer an event may carry (i64)",
            i64::MAX
        ));
    }
    // A float. With a fraction, the schema's `type` refuses it already; without one (`1.0`,
    // `-0`, `1e3`), JSON Schema calls it an integer, but the Rust types do not read it as one.
    let float = number.as_f64()?;
    (float.fract() == 0.0).then(|| {
        format!(
            "{number} is not written as an integer: write it without a fraction, an exponent or a minus zero (1, not 1.0, 1e0 or -0)"
        )
    })
}

/// Every number in `data` at the place `steps` lead to, with its JSON pointer (`at` being the
/// pointer of `data` itself).
fn numbers_at<'a>(
    data: &'a Value,
    steps: &[Step],
    at: String,
    found: &mut Vec<(String, &'a Number)>,
) {
    let Some((step, rest)) = steps.split_first() else {
        if let Value::Number(number) = data {
            found.push((at, number));
        }
        return;
    };
    match step {
        Step::Field(name) => {
            if let Some(value) = data.as_object().and_then(|fields| fields.get(name)) {
                let escaped = name.replace('~', "~0").replace('/', "~1");
                numbers_at(value, rest, format!("{at}/{escaped}"), found);
            }
        }
        Step::EachItem => {
            if let Some(items) = data.as_array() {
                for (index, item) in items.iter().enumerate() {
                    numbers_at(item, rest, format!("{at}/{index}"), found);
                }
            }
        }
    }
}

/// Whether `schema` types its value as `integer` (alone or among other types).
fn types_integer(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str() == "integer",
        Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind.as_str() == Some("integer")),
        _ => false,
    }
}

/// Every place `schema` types as `integer`, through `properties` and `items` (the only
/// keywords that lead into data which the schemas use: a test fails if one uses another).
fn integer_places(schema: &Value, steps: &mut Vec<Step>, found: &mut Vec<Vec<Step>>) {
    if types_integer(schema) {
        found.push(steps.clone());
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            steps.push(Step::Field(name.clone()));
            integer_places(property, steps, found);
            steps.pop();
        }
    }
    if let Some(items) = schema.get("items").filter(|items| items.is_object()) {
        steps.push(Step::EachItem);
        integer_places(items, steps, found);
        steps.pop();
    }
}

/// A place's name as [`crate::money::Ceiling::field`] spells it: `items[].unit_price_cents`.
fn place_name(steps: &[Step]) -> String {
    let mut name = String::new();
    for step in steps {
        match step {
            Step::Field(field) => {
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(field);
            }
            Step::EachItem => name.push_str("[]"),
        }
    }
    name
}

fn compile(file: &SchemaFile) -> Result<Compiled, ContractError> {
    let error = |message: String| ContractError::Invalid {
        event_type: file.event_type.to_owned(),
        version: file.version,
        message,
    };
    let schema: Value = serde_json::from_str(file.text).map_err(|e| error(e.to_string()))?;
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| error(e.to_string()))?;
    let mut places = Vec::new();
    integer_places(&schema, &mut Vec::new(), &mut places);
    let integers = places
        .into_iter()
        .map(|steps| {
            let name = place_name(&steps);
            let ceiling = crate::money::ceiling_of(file.event_type, file.version, &name);
            IntegerField { steps, ceiling }
        })
        .collect();
    Ok(Compiled {
        validator,
        integers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::CEILINGS;

    fn schema_of(file: &SchemaFile) -> Value {
        serde_json::from_str(file.text).unwrap()
    }

    /// Keywords that lead from a schema into its data other than `properties` and `items`:
    /// the integer rule does not follow them, so no schema may use them.
    const UNFOLLOWED: &[&str] = &[
        "$ref",
        "$dynamicRef",
        "$defs",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "prefixItems",
        "contains",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
    ];

    fn keywords_in(schema: &Value, path: &str, found: &mut Vec<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        for (key, value) in object {
            if UNFOLLOWED.contains(&key.as_str()) {
                found.push(format!("{path}/{key}"));
            }
            match key.as_str() {
                "properties" => {
                    if let Some(properties) = value.as_object() {
                        for (name, property) in properties {
                            keywords_in(property, &format!("{path}/properties/{name}"), found);
                        }
                    }
                }
                "items" => keywords_in(value, &format!("{path}/items"), found),
                _ => {}
            }
        }
    }

    #[test]
    fn the_integer_rule_reaches_every_integer_the_schemas_declare() {
        for file in SCHEMAS {
            let mut found = Vec::new();
            keywords_in(&schema_of(file), "", &mut found);
            assert!(
                found.is_empty(),
                "{} v{} uses {found:?}, which the integer rule does not follow: teach integer_places it",
                file.event_type,
                file.version
            );
        }
        let contract = EventContract::new().unwrap();
        let product = &contract.schemas[&("product.updated".to_owned(), 1)];
        let names: Vec<String> = product
            .integers
            .iter()
            .map(|f| place_name(&f.steps))
            .collect();
        assert_eq!(names, ["price_cents", "version"]);
        let order = &contract.schemas[&("order.created".to_owned(), 1)];
        let names: Vec<String> = order
            .integers
            .iter()
            .map(|f| place_name(&f.steps))
            .collect();
        for name in [
            "items[].quantity",
            "items[].unit_price_cents",
            "total_cents",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
    }

    #[test]
    fn every_ceiling_names_an_integer_field_and_every_money_field_has_one() {
        let contract = EventContract::new().unwrap();
        for ceiling in CEILINGS {
            let compiled = contract
                .schemas
                .get(&(ceiling.event_type.to_owned(), ceiling.version))
                .unwrap_or_else(|| panic!("{ceiling:?} names no schema"));
            let named = compiled.integers.iter().any(|field| {
                place_name(&field.steps) == ceiling.field && field.ceiling == Some(ceiling.max)
            });
            assert!(named, "{ceiling:?} names no integer field of its schema");
        }
        for file in SCHEMAS {
            let schema = schema_of(file);
            let compiled = &contract.schemas[&(file.event_type.to_owned(), file.version)];
            for field in &compiled.integers {
                let name = place_name(&field.steps);
                if !name.ends_with("_cents") {
                    continue;
                }
                let mut at = &schema;
                for step in &field.steps {
                    at = match step {
                        Step::Field(name) => &at["properties"][name.as_str()],
                        Step::EachItem => &at["items"],
                    };
                }
                assert!(
                    at.get("maximum").is_some() || field.ceiling.is_some(),
                    "{} v{}: the money field {name} has no ceiling: add `maximum` (in a new version) or an entry to money::CEILINGS",
                    file.event_type,
                    file.version
                );
            }
        }
    }

    #[test]
    fn fields_are_named_from_the_envelope_root() {
        let named = |at: &str, missing: Option<&str>, prefix: &str| {
            Problem {
                at: at.to_owned(),
                missing: missing.map(str::to_owned),
                message: String::new(),
            }
            .into_field(prefix)
            .field
        };
        assert_eq!(named("/source", None, ""), "source");
        assert_eq!(named("", Some("specversion"), ""), "specversion");
        assert_eq!(named("/price_cents", None, "data"), "data.price_cents");
        assert_eq!(named("", Some("price_cents"), "data"), "data.price_cents");
        assert_eq!(
            named("/items/0/quantity", None, "data"),
            "data.items[0].quantity"
        );
        assert_eq!(named("/a~1b", None, "data"), "data.a/b");
        assert_eq!(named("", None, ""), "");
    }

    const REWARD: SchemaFile = SchemaFile {
        event_type: "reward.granted",
        version: 1,
        text: r#"{"type": "object", "required": ["reward_id"], "properties": {"reward_id": {"type": "string"}}}"#,
    };

    #[test]
    fn a_services_own_type_is_checked_and_taken_from_that_service_alone() {
        let own = OwnEvents {
            publisher: "loyalty",
            schemas: &[REWARD],
        };
        let contract = EventContract::with_own_events(own).unwrap();
        contract
            .validate(
                "reward.granted",
                "1",
                &serde_json::json!({"reward_id": "r-1"}),
            )
            .unwrap();
        let missing = contract.validate("reward.granted", "1", &serde_json::json!({}));
        assert!(
            matches!(missing, Err(Violation::Invalid { .. })),
            "{missing:?}"
        );
        assert_eq!(contract.publishers("reward.granted"), ["loyalty"]);
        assert_eq!(contract.publishers("order.created"), ["orders"]);
        // The catalog's contract knows no such type.
        let catalog = EventContract::new().unwrap();
        let unknown = catalog.validate("reward.granted", "1", &serde_json::json!({}));
        assert!(
            matches!(unknown, Err(Violation::UnknownType { .. })),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_service_cannot_define_a_type_the_catalog_has() {
        let taken = SchemaFile {
            event_type: "order.created",
            ..REWARD
        };
        let own = OwnEvents {
            publisher: "loyalty",
            schemas: std::slice::from_ref(Box::leak(Box::new(taken))),
        };
        let error = EventContract::with_own_events(own)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("loyalty defines order.created v1"),
            "{error}"
        );
    }
}
