//! Validation of an event's data against the schema of its type and version.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use conveyor::{Contract, ContractViolation, Envelope};
use serde_json::Value;

use crate::catalog::{SCHEMAS, SchemaFile};

/// A schema that does not compile; caught by the crate's tests before it can ship.
#[derive(Debug, thiserror::Error)]
#[error("schema {event_type} v{version} is not a valid JSON Schema: {message}")]
pub struct ContractError {
    event_type: String,
    version: u32,
    message: String,
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
        "dataschema {dataschema:?} does not name {event_type}: expected events-schema/{event_type}/v<N>"
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

/// Every schema of the contract, compiled once.
pub struct EventContract {
    validators: HashMap<(String, u32), jsonschema::Validator>,
}

impl EventContract {
    /// Compiles every schema in the catalog.
    ///
    /// # Errors
    /// [`ContractError`] naming a schema that does not compile.
    pub fn new() -> Result<Self, ContractError> {
        let mut validators = HashMap::new();
        for file in SCHEMAS {
            validators.insert((file.event_type.to_owned(), file.version), compile(file)?);
        }
        Ok(Self { validators })
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
        let Some(dataschema) = envelope.dataschema.as_deref() else {
            return Ok("1".to_owned());
        };
        let mismatched = || Violation::MismatchedSchema {
            event_type: envelope.event_type.clone(),
            dataschema: dataschema.to_owned(),
        };
        let prefix = format!("events-schema/{}/v", envelope.event_type);
        let version = dataschema.strip_prefix(&prefix).ok_or_else(mismatched)?;
        if version.is_empty() {
            return Err(mismatched());
        }
        Ok(version.to_owned())
    }

    /// Checks `data` against the schema of `event_type` at `version`.
    ///
    /// # Errors
    /// [`Violation`] saying which field is wrong, or that the type or version is unknown.
    pub fn validate(&self, event_type: &str, version: &str, data: &Value) -> Result<(), Violation> {
        let validator = version.parse::<u32>().ok().and_then(|number| {
            self.validators
                .get(&(event_type.to_owned(), number))
                .map(|v| (number, v))
        });
        // The known versions are only needed to explain a miss; hits skip the scan.
        let Some((number, validator)) = validator else {
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
        let errors: Vec<String> = validator
            .iter_errors(data)
            .map(|error| {
                let path = error.instance_path().to_string();
                let at = if path.is_empty() {
                    "(data)".to_owned()
                } else {
                    path
                };
                format!("{at}: {error}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Violation::Invalid {
                event_type: event_type.to_owned(),
                version: number,
                errors,
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
}

impl Contract for EventContract {
    fn check(&self, envelope: &Envelope) -> Result<(), ContractViolation> {
        self.validate_envelope(envelope)
            .map_err(|violation| ContractViolation::new(violation.to_string()))
    }

    fn publishers(&self, event_type: &str) -> Vec<&'static str> {
        crate::publishers::publishers_of(event_type)
    }
}

fn compile(file: &SchemaFile) -> Result<jsonschema::Validator, ContractError> {
    let error = |message: String| ContractError {
        event_type: file.event_type.to_owned(),
        version: file.version,
        message,
    };
    let schema: Value = serde_json::from_str(file.text).map_err(|e| error(e.to_string()))?;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| error(e.to_string()))
}
