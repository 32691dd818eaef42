//! Text from the broker printed to an operator's terminal. Bodies and headers come from
//! producers; a control character in them (an escape sequence, a carriage return) could
//! rewrite what the operator sees, so each is shown escaped instead.

use std::borrow::Cow;

/// `text` with every control character but newline and tab escaped (`\u{1b}`).
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(
            printable("\x1b[2J\x1b[31mred\rover"),
            "\\u{1b}[2J\\u{1b}[31mred\\u{d}over"
        );
        assert_eq!(printable("line one\n\tline two"), "line one\n\tline two");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
    }
}
