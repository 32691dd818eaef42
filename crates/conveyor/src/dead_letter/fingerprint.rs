//! Failure fingerprints: dead letters that failed the same way share one, whatever ids and
//! numbers their error messages carry.

/// A group key: error kind, event type and the error with ids and numbers masked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint {
    /// Twelve hex digits, stable across runs and machines, for `--group`.
    pub id: String,
    /// The dead letter's error kind, or `unknown`.
    pub error_kind: String,
    /// The event type, or `unknown`.
    pub event_type: String,
    /// The error with ids and numbers masked by [`mask`], or `(no error recorded)`.
    pub masked_error: String,
}

/// The fingerprint of a failure from its recorded kind, event type and error (a dead
/// letter's headers; see `DeadLetter::fingerprint`).
pub(crate) fn of(
    error_kind: Option<&str>,
    event_type: Option<&str>,
    error: Option<&str>,
) -> Fingerprint {
    let error_kind = error_kind.unwrap_or("unknown").to_owned();
    let event_type = event_type.unwrap_or("unknown").to_owned();
    let masked_error = mask(error.unwrap_or("(no error recorded)"));
    let id = format!(
        "{:012x}",
        fnv1a(&[&error_kind, &event_type, &masked_error]) >> 16
    );
    Fingerprint {
        id,
        error_kind,
        event_type,
        masked_error,
    }
}

/// Replaces UUIDs and long hex runs with `<id>`, and digit runs with `<n>`.
pub fn mask(error: &str) -> String {
    let mut masked = String::with_capacity(error.len());
    let mut word = String::new();
    let flush = |word: &mut String, masked: &mut String| {
        if !word.is_empty() {
            masked.push_str(&mask_word(word));
            word.clear();
        }
    };
    for character in error.chars() {
        if character.is_ascii_alphanumeric() || character == '-' {
            word.push(character);
        } else {
            flush(&mut word, &mut masked);
            masked.push(character);
        }
    }
    flush(&mut word, &mut masked);
    masked
}

fn mask_word(word: &str) -> String {
    let hex_digits = word.chars().filter(char::is_ascii_hexdigit).count();
    let is_id = word.len() >= 8
        && word.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && hex_digits >= 8
        && word.chars().any(|c| c.is_ascii_digit());
    if is_id {
        return "<id>".to_owned();
    }
    let mut out = String::with_capacity(word.len());
    let mut in_number = false;
    for character in word.chars() {
        if character.is_ascii_digit() {
            if !in_number {
                out.push_str("<n>");
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(character);
        }
    }
    out
}

fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_numbers_are_masked_so_alike_failures_group_together() {
        let first = mask(
            "order 0192f1c4-7e1a-7c3b-9d2e-4f5a6b7c8d9e: connect to 10.0.0.7:5432 refused after 3 tries",
        );
        let second = mask(
            "order 0192f1c4-0000-7c3b-9d2e-aaaaaaaaaaaa: connect to 10.0.0.9:5432 refused after 12 tries",
        );
        assert_eq!(first, second);
        assert_eq!(
            first,
            "order <id>: connect to <n>.<n>.<n>.<n>:<n> refused after <n> tries"
        );
        assert_eq!(
            mask("payment-declined for user"),
            "payment-declined for user"
        );
    }
}
