//! The JSON Schemas of a document: made by schemars from the Rust types that read requests
//! (as they are deserialized) and write answers (as they are serialized), all inlined so that
//! every schema stands alone (a client, a validator or a test generator reads one schema
//! without resolving references), and the text rules of [`crate::input`] as the patterns
//! those types' `#[schemars(regex(pattern = …))]` attributes name.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

/// No control character (C0, DEL or C1), as [`crate::input::check_text`] requires.
pub const ONE_LINE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// One-line text with a character that is not white space: what `check_text` passes and
/// Rust's `trim` leaves something of (its white space is Unicode's `White_Space`, spelled out
/// here because regular expression engines disagree on `\s`).
pub const NOT_BLANK: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$";

/// As [`NOT_BLANK`], for a field trimmed before it is checked: white space (tabs and line
/// breaks too) may surround it.
pub const TRIMMED_NOT_BLANK: &str = r"^[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$";

/// As [`ONE_LINE`], for a field trimmed before it is checked (a login at sign-in).
pub const TRIMMED_ONE_LINE: &str = r"^[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\u0000-\u001F\u007F-\u009F]*[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$";

/// An email as users takes it, trimmed: one `@`, something before it, a dot after it, and no
/// control character.
pub const EMAIL: &str = r"^[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^@\u0000-\u001F\u007F-\u009F]+@[^@\u0000-\u001F\u007F-\u009F]*\.[^@\u0000-\u001F\u007F-\u009F]*[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$";

/// A secret (a password, a client secret): anything but NUL; its limit is in bytes
/// ([`crate::input::MAX_SECRET_BYTES`]), which JSON Schema cannot count, so the schema's
/// `maxLength` (characters) is only the upper bound of what may pass.
pub const NUL_FREE: &str = r"^[^\u0000]*$";

/// A stock keeping unit, as [`crate::input::check_sku`] and the event contract have it.
pub const SKU: &str = r"^[A-Z0-9][A-Z0-9-]{1,31}$";

/// An ISO 3166-1 alpha-2 country code, like `FR`.
pub const COUNTRY: &str = r"^[A-Z]{2}$";

/// An ISO 4217 currency code, like `EUR`.
pub const CURRENCY: &str = r"^[A-Z]{3}$";

/// Makes one schema with a generator: a type's, derived ([`derived`]).
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`, inlined.
pub(crate) fn derived<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Where a schema comes from.
#[derive(Clone)]
pub(crate) enum Source {
    /// Derived from the Rust type that reads the request or writes the answer.
    Derived(SchemaFn),
    /// Given whole: a contract's schema, or one no Rust type has.
    Given(Value),
}

/// The two generators of a document: requests are described as they are read, answers as
/// they are written (an `Option` field is optional in one, present and nullable in the other).
pub(crate) struct Generators {
    requests: SchemaGenerator,
    answers: SchemaGenerator,
}

impl Generators {
    pub(crate) fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        });
        Self {
            requests: settings.clone().for_deserialize().into_generator(),
            answers: settings.for_serialize().into_generator(),
        }
    }

    /// The schema of what a request carries.
    pub(crate) fn request(&mut self, source: &Source) -> Value {
        match source {
            Source::Derived(make) => make(&mut self.requests).to_value(),
            Source::Given(schema) => schema.clone(),
        }
    }

    /// The schema of what an answer carries.
    pub(crate) fn answer(&mut self, source: &Source) -> Value {
        match source {
            Source::Derived(make) => make(&mut self.answers).to_value(),
            Source::Given(schema) => schema.clone(),
        }
    }
}
