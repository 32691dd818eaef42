//! What the text of a request may hold, checked before any of it reaches the database.
//!
//! Postgres refuses the NUL character in `text` (and `\u0000` in `jsonb`), and a unique
//! index refuses a key of more than about 2,700 bytes. Text like that would fail deep in a
//! handler as a database error, answered 503 "try again shortly" to a request that can never
//! succeed. So every string an API takes is checked first, and a violation is a 422 whose
//! message names the field and the rule:
//!
//! - [`check_text`]: one-line text (emails, names, address lines, SKUs, logins): no control
//!   character (U+0000 to U+001F and U+007F to U+009F: NUL, tab, line breaks, escape…) and
//!   at most a number of characters.
//! - [`check_secret`]: passwords and client secrets, which are hashed and never stored as
//!   text: no NUL, and at most a number of bytes (hashing costs grow with the bytes).
//! - [`check_sku`]: a stock keeping unit, as the event contract has it.
//! - [`path_text`]: a text id in a path; one that breaks its rule names nothing (404).
//!
//! Lengths count characters, Unicode scalar values (Rust's `char`s), not bytes: JSON
//! Schema's `maxLength`, which the event contract uses, counts them too, so a value the API
//! accepts is one the events it causes may carry. "é" is one character (2 bytes in UTF-8),
//! "😀" one (4 bytes), a combining sequence such as "e\u{301}" two. A character is at most
//! 4 bytes, so 254 characters are at most 1,016 bytes, far under the index's limit.
//!
//! The backstop, for whatever slips through: [`refused_data`] recognises a database error
//! caused by the data itself (SQLSTATE class 22, or 54000), which [`ApiError`] answers with
//! a 422 (the consumer runtime makes the same errors permanent for a handler).

use std::fmt;

pub use crate::db_refusal::{refused_data, refused_data_in};
use crate::http::{ApiError, ApiResult};

/// An email address (RFC 5321's limit on a path); also a person's login.
pub const MAX_EMAIL_CHARS: usize = 254;
/// A person's, a product's or a producing system's name.
pub const MAX_NAME_CHARS: usize = 200;
/// The first line of a postal address.
pub const MAX_ADDRESS_LINE_CHARS: usize = 200;
/// The city of a postal address.
pub const MAX_CITY_CHARS: usize = 100;
/// The postal code of a postal address.
pub const MAX_POSTAL_CODE_CHARS: usize = 20;
/// A stock keeping unit (see [`check_sku`]).
pub const MAX_SKU_CHARS: usize = 32;
/// A password or a client secret, in bytes: hashing costs grow with them.
pub const MAX_SECRET_BYTES: usize = 1024;

/// How much of a refused value an error message shows.
const SHOWN_CHARS: usize = 40;

/// Why a field of a request is refused. Its message names the field and the rule; as an
/// [`ApiError`] it is a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    /// Longer than the field allows.
    TooLong {
        field: String,
        max: usize,
        actual: usize,
        /// `characters` or `bytes`.
        unit: &'static str,
    },
    /// Holds a character the field refuses: NUL, or another control character.
    Character {
        field: String,
        character: char,
        /// Counted in characters, from 1.
        position: usize,
    },
    /// Not of the field's form.
    Format {
        field: String,
        /// The value as [`shown`] shows it.
        value: String,
        rule: &'static str,
    },
}

impl InputError {
    /// The field that broke its rule, as the message names it.
    pub fn field(&self) -> &str {
        match self {
            Self::TooLong { field, .. }
            | Self::Character { field, .. }
            | Self::Format { field, .. } => field,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong {
                field,
                max,
                actual,
                unit,
            } => write!(f, "{field} must be at most {max} {unit} (it has {actual})"),
            Self::Character {
                field,
                character: '\0',
                position,
            } => write!(
                f,
                "{field} must not contain the NUL character (U+0000, at character {position})"
            ),
            Self::Character {
                field,
                character,
                position,
            } => {
                let code = u32::from(*character);
                write!(
                    f,
                    "{field} must not contain control characters (U+{code:04X} at character {position})"
                )
            }
            Self::Format { field, value, rule } => write!(f, "{field} {value} {rule}"),
        }
    }
}

impl std::error::Error for InputError {}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> Self {
        Self::unprocessable(error.to_string())
    }
}

/// Checks one-line text: no control character (C0, DEL or C1: NUL, tab, line breaks…) and
/// at most `max_chars` characters (not bytes; see the module's notes).
///
/// # Errors
/// The first rule `value` breaks, naming `field`.
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), InputError> {
    if let Some((index, character)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(InputError::Character {
            field: field.to_owned(),
            character,
            position: index + 1,
        });
    }
    check_max_chars(field, value, max_chars)
}

/// Checks that `value` has at most `max_chars` characters.
///
/// # Errors
/// When it has more, naming `field`.
pub fn check_max_chars(field: &str, value: &str, max_chars: usize) -> Result<(), InputError> {
    // A character takes at least one byte: no more bytes than that is short enough.
    if value.len() <= max_chars {
        return Ok(());
    }
    let actual = value.chars().count();
    if actual <= max_chars {
        Ok(())
    } else {
        Err(InputError::TooLong {
            field: field.to_owned(),
            max: max_chars,
            actual,
            unit: "characters",
        })
    }
}

/// Checks that `value` has at most `max_bytes` bytes of UTF-8.
///
/// # Errors
/// When it has more, naming `field`.
pub fn check_max_bytes(field: &str, value: &str, max_bytes: usize) -> Result<(), InputError> {
    if value.len() <= max_bytes {
        Ok(())
    } else {
        Err(InputError::TooLong {
            field: field.to_owned(),
            max: max_bytes,
            actual: value.len(),
            unit: "bytes",
        })
    }
}

/// Checks a new password or secret: no NUL and at most `max_bytes` bytes. Other control
/// characters are allowed: a secret is hashed, never stored or shown as text.
///
/// # Errors
/// The first rule `value` breaks, naming `field`.
pub fn check_secret(field: &str, value: &str, max_bytes: usize) -> Result<(), InputError> {
    if let Some(index) = value.chars().position(|c| c == '\0') {
        return Err(InputError::Character {
            field: field.to_owned(),
            character: '\0',
            position: index + 1,
        });
    }
    check_max_bytes(field, value, max_bytes)
}

/// Checks a stock keeping unit as the event contract has it (`^[A-Z0-9][A-Z0-9-]{1,31}$`):
/// 2 to 32 upper-case letters, digits and dashes, not starting with a dash.
///
/// # Errors
/// The first rule `value` breaks, naming `field`.
pub fn check_sku(field: &str, value: &str) -> Result<(), InputError> {
    check_text(field, value, MAX_SKU_CHARS)?;
    let valid = value.len() >= 2
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(InputError::Format {
            field: field.to_owned(),
            value: shown(value),
            rule: "must be 2 to 32 upper-case letters, digits and dashes",
        })
    }
}

/// A text id from a request's path (a SKU, a key id), checked as [`check_text`] checks a
/// field.
///
/// # Errors
/// A 404 naming the parameter and the rule it breaks: such a text names nothing stored (as
/// [`crate::parse_uuid`] answers for a malformed id).
pub fn path_text<'a>(field: &str, text: &'a str, max_chars: usize) -> ApiResult<&'a str> {
    match check_text(field, text, max_chars) {
        Ok(()) => Ok(text),
        Err(error) => Err(ApiError::not_found(format!("no such {field}: {error}"))),
    }
}

/// `value` as an error message quotes it: in double quotes with control characters escaped
/// (as `{:?}` shows it), cut after 40 characters so that a huge value is not sent back whole.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn text_without_control_characters_within_its_length_passes() {
        assert_eq!(check_text("name", "Ada Lovelace", 200), Ok(()));
        assert_eq!(check_text("name", "", 200), Ok(()));
        assert_eq!(check_text("name", "exactly", 7), Ok(()));
    }

    #[test]
    fn a_nul_is_refused_naming_the_field_and_where_it_is() {
        let error = check_text("email", "ada\0@example.com", 254).unwrap_err();
        assert_eq!(error.field(), "email");
        assert_eq!(
            error.to_string(),
            "email must not contain the NUL character (U+0000, at character 4)"
        );
        // A secret may hold other control characters, never a NUL.
        let error = check_secret("password", "\0correct horse", 1024).unwrap_err();
        assert_eq!(error.field(), "password");
        assert!(error.to_string().contains("NUL"), "{error}");
        assert_eq!(check_secret("password", "tab\there", 1024), Ok(()));
    }

    #[test]
    fn other_control_characters_are_refused_in_one_line_text() {
        for (text, code) in [
            ("line\nbreak", "U+000A"),
            ("tab\there", "U+0009"),
            ("esc\u{1b}", "U+001B"),
            ("del\u{7f}", "U+007F"),
            ("c1\u{85}", "U+0085"),
        ] {
            let error = check_text("name", text, 200).unwrap_err();
            let message = error.to_string();
            assert!(message.starts_with("name must not contain control characters"));
            assert!(message.contains(code), "{message}");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 254 two-byte characters: 508 bytes, but 254 characters, as JSON Schema counts.
        let accents = "é".repeat(254);
        assert_eq!(accents.len(), 508);
        assert_eq!(check_text("email", &accents, 254), Ok(()));
        // One four-byte character more is one too many.
        let over = format!("{accents}😀");
        assert_eq!(
            check_text("email", &over, 254),
            Err(InputError::TooLong {
                field: "email".to_owned(),
                max: 254,
                actual: 255,
                unit: "characters",
            })
        );
        // Four-byte characters at the limit pass; a combining accent is a character of its own.
        assert_eq!(check_text("name", &"😀".repeat(3), 3), Ok(()));
        assert!(check_text("name", "e\u{301}e\u{301}", 3).is_err());
        assert_eq!(check_text("name", "e\u{301}e", 3), Ok(()));
    }

    #[test]
    fn a_huge_value_is_refused_without_being_sent_back() {
        let email = format!("{}@example.com", "a".repeat(100_000));
        let error = check_text("email", &email, MAX_EMAIL_CHARS).unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            "email must be at most 254 characters (it has 100012)"
        );
        assert_eq!(shown(&email).chars().count(), 43, "{}", shown(&email));
        assert_eq!(shown("MUG-1"), "\"MUG-1\"");
        assert_eq!(shown("a\0b"), "\"a\\0b\"");
    }

    #[test]
    fn secrets_are_measured_in_bytes() {
        assert_eq!(check_secret("password", &"é".repeat(512), 1024), Ok(()));
        let error = check_secret("password", &"é".repeat(513), 1024).unwrap_err();
        assert_eq!(
            error.to_string(),
            "password must be at most 1024 bytes (it has 1026)"
        );
    }

    #[test]
    fn skus_follow_the_contract() {
        assert_eq!(check_sku("sku", "MUG-1"), Ok(()));
        assert_eq!(check_sku("sku", &"A".repeat(32)), Ok(()));
        for bad in ["M", "-MUG", "mug-1", "MUG 1", "MUGÉ"] {
            let error = check_sku("items[0].sku", bad).unwrap_err();
            assert_eq!(error.field(), "items[0].sku");
        }
        assert_eq!(
            check_sku("sku", "mug").unwrap_err().to_string(),
            "sku \"mug\" must be 2 to 32 upper-case letters, digits and dashes"
        );
        assert!(matches!(
            check_sku("sku", &"A".repeat(33)),
            Err(InputError::TooLong { .. })
        ));
        assert!(matches!(
            check_sku("sku", "MUG\0"),
            Err(InputError::Character { .. })
        ));
    }

    #[test]
    fn input_errors_are_unprocessable_and_bad_path_ids_are_not_found() {
        let error = ApiError::from(check_text("name", "\0", 200).unwrap_err());
        assert_eq!(
            error.into_response().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(path_text("sku", "MUG-1", MAX_SKU_CHARS).unwrap(), "MUG-1");
        let missing = path_text("sku", "MUG\0", MAX_SKU_CHARS).unwrap_err();
        assert_eq!(missing.into_response().status(), StatusCode::NOT_FOUND);
    }

    /// A database error with a given SQLSTATE, as Postgres would answer.
    #[derive(Debug)]
    struct Refusal(&'static str);

    impl fmt::Display for Refusal {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "error with SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Refusal {}

    impl sqlx::error::DatabaseError for Refusal {
        fn message(&self) -> &str {
            "refused"
        }

        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn status_of(error: sqlx::Error) -> StatusCode {
        ApiError::from(error).into_response().status()
    }

    #[test]
    fn data_the_database_refuses_is_the_clients_fault() {
        for code in ["22021", "22001", "22P02", "22P05", "22003", "54000"] {
            assert_eq!(refused_data(&Refusal(code).into()).as_deref(), Some(code));
            assert_eq!(
                status_of(Refusal(code).into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{code}"
            );
        }
        // Found through a context too, as `anyhow` carries it.
        let wrapped = anyhow::Error::from(sqlx::Error::from(Refusal("22021"))).context("insert");
        assert_eq!(refused_data_in(&wrapped).as_deref(), Some("22021"));
    }

    #[test]
    fn the_database_being_away_or_busy_stays_a_503() {
        for code in ["08006", "53300", "57P01", "40001", "55P03", "54001"] {
            assert_eq!(refused_data(&Refusal(code).into()), None, "{code}");
            assert_eq!(
                status_of(Refusal(code).into()),
                StatusCode::SERVICE_UNAVAILABLE,
                "{code}"
            );
        }
        assert_eq!(
            status_of(sqlx::Error::PoolTimedOut),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
