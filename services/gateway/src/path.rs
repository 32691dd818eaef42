//! A request path decoded and checked once, before anything else looks at it.
//!
//! The gateway decides where a request may go by its path, and the service it forwards to
//! reads that path again, through another parser. When the two readings differ the
//! allow-list is bypassed: `/api/orders/%2e%2e/cache/users/1` matched the `orders` prefix
//! here, and the URL parser that sent it on resolved `%2e%2e` as `..`, so orders answered
//! its admin-only `/cache/users/1`. The same trick works with every spelling a parser may
//! fold into `..` or `/`: `.%2e`, `%2E.`, `%252e` decoded twice, `%2f`, `%5c`, `\`, `..;`.
//!
//! So the gateway does not try to guess how each parser resolves a path: [`normalise`]
//! refuses every path that another parser could read differently, and lets through only
//! paths that are already in their one normal form. What is matched, what picks the rate
//! bucket and what is forwarded is then the same string, and every reader agrees on it.
//!
//! The normal form is RFC 3986's (§6.2.2): no dot segments, no empty segments, no
//! percent-encoded unreserved characters (`%41` is `A`, `%2e` is `.`), and otherwise only
//! characters a path may hold as they are. Escapes of other characters (`%20`, `%C3%A9`)
//! are part of the normal form and pass, except those that decode to something that means
//! more than a character in a path at some reader: a separator (`/`, `\`), a path
//! parameter (`;`), a query or fragment (`?`, `#`), another escape (`%`: double encoding),
//! or a control character such as NUL. Decoded bytes must be UTF-8, which also refuses
//! overlong forms such as `%c0%ae` (a `.` to lenient decoders).

/// A request path that passed [`normalise`]: the path as the client sent it, which is also
/// its normal form. Only [`normalise`] makes one, so a function that takes a `NormalPath`
/// cannot be handed a raw path by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath(String);

impl NormalPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a path was refused. Each message starts with "the path" so that it reads well after
/// the gateway's "the request path is refused: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with /")]
    NotAbsolute,
    #[error(
        "the path has a dot segment (`.` or `..`, plain or percent-encoded), which a service could resolve outside the route"
    )]
    DotSegment,
    #[error("the path has an empty segment (`//`)")]
    EmptySegment,
    #[error("the path has a percent-encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
    #[error("the path has a backslash, which some servers read as a slash")]
    Backslash,
    #[error("the path has a `;` (a path parameter), plain or percent-encoded")]
    PathParameter,
    #[error("the path has a NUL (%00)")]
    Nul,
    #[error("the path has a control character")]
    ControlCharacter,
    #[error("the path is percent-encoded twice (%25 decodes to another escape)")]
    DoubleEncoding,
    #[error("the path has a percent-encoded `?` or `#` (%3F, %23)")]
    EncodedDelimiter,
    #[error("the path has a `%` not followed by two hexadecimal digits")]
    MalformedEscape,
    #[error("the path is not UTF-8 once decoded (overlong forms such as %C0%AE are refused too)")]
    InvalidUtf8,
    #[error("the path percent-encodes {0:?}, which needs no encoding: send it as it is")]
    NeedlessEncoding(char),
    #[error("the path has the character {0:?}, which must be percent-encoded")]
    InvalidCharacter(char),
}

/// Decodes and checks `raw` (a request's path, without its query), and answers it as a
/// [`NormalPath`] when it is already in its normal form; see the module's documentation
/// for what that is and why anything else is refused rather than repaired.
///
/// A single trailing slash is kept (`/api/orders/` is not `/api/orders` to every
/// server); a slash anywhere else must be followed by a segment.
///
/// # Errors
/// The first thing found that another reader of the path could read differently.
pub fn normalise(raw: &str) -> Result<NormalPath, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        check_segment(segment, last)?;
    }
    Ok(NormalPath(raw.to_owned()))
}

/// Checks one segment between slashes: its raw characters, then its decoded bytes.
fn check_segment(segment: &str, last: bool) -> Result<(), PathError> {
    if segment.is_empty() {
        return if last {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    // Reported only once the whole segment is known: `%2e%2e` is a dot segment first.
    let mut needless = None;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let value = escaped(bytes, index).ok_or(PathError::MalformedEscape)?;
            match value {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                b';' => return Err(PathError::PathParameter),
                b'%' => return Err(PathError::DoubleEncoding),
                b'?' | b'#' => return Err(PathError::EncodedDelimiter),
                0 => return Err(PathError::Nul),
                _ if value.is_ascii_control() => return Err(PathError::ControlCharacter),
                _ if is_unreserved(value) => {
                    needless.get_or_insert(char::from(value));
                }
                _ => {}
            }
            decoded.push(value);
            index += 3;
        } else {
            match byte {
                b'\\' => return Err(PathError::Backslash),
                b';' => return Err(PathError::PathParameter),
                0 => return Err(PathError::Nul),
                _ if byte.is_ascii_control() => return Err(PathError::ControlCharacter),
                _ if is_plain(byte) => {}
                _ => {
                    // Every byte before this one was ASCII, so `index` is a char boundary.
                    let character = segment[index..]
                        .chars()
                        .next()
                        .unwrap_or(char::REPLACEMENT_CHARACTER);
                    return Err(PathError::InvalidCharacter(character));
                }
            }
            decoded.push(byte);
            index += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?;
    if decoded == "." || decoded == ".." {
        return Err(PathError::DotSegment);
    }
    match needless {
        Some(character) => Err(PathError::NeedlessEncoding(character)),
        None => Ok(()),
    }
}

/// The byte the escape at `bytes[index]` (a `%`) stands for, if two hex digits follow.
fn escaped(bytes: &[u8], index: usize) -> Option<u8> {
    let digit = |offset: usize| {
        bytes
            .get(index + offset)
            .and_then(|byte| char::from(*byte).to_digit(16))
            .and_then(|value| u8::try_from(value).ok())
    };
    Some((digit(1)? << 4) | digit(2)?)
}

/// RFC 3986's unreserved characters: an escape of one of them changes nothing but the
/// spelling, and is how `.` and `..` are smuggled past a literal comparison.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// The characters a path segment may hold as they are (RFC 3986's `pchar` without the
/// escape, and without `;`, refused on its own). Anything else a URL parser would encode,
/// so what is forwarded would no longer be what was matched.
fn is_plain(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_climbing_or_hiding_a_separator_is_refused() {
        use PathError::*;
        let cases = [
            ("/api/orders/%2e%2e/cache/users/1", DotSegment),
            ("/api/orders/%2E%2E/cache/users/1", DotSegment),
            ("/api/orders/.%2e/cache/users/1", DotSegment),
            ("/api/orders/.%2E/cache/users/1", DotSegment),
            ("/api/orders/%2e./cache/users/1", DotSegment),
            ("/api/orders/%2E./cache/users/1", DotSegment),
            ("/api/orders/../cache/users/1", DotSegment),
            ("/api/orders/./1", DotSegment),
            ("/api/orders/%2e/1", DotSegment),
            ("/api/orders/1/..", DotSegment),
            ("/api/orders/1/.", DotSegment),
            ("/api/orders/1/%2e%2e", DotSegment),
            ("/api/products/x/../../reservations/1", DotSegment),
            ("/..", DotSegment),
            ("/api//orders/1", EmptySegment),
            ("//api/orders/1", EmptySegment),
            ("/api/orders//1", EmptySegment),
            ("/api/orders%2fcache/users/1", EncodedSeparator),
            ("/api/orders/..%2Fcache/users/1", EncodedSeparator),
            ("/api/orders/%2e%2e%2fcache/users/1", EncodedSeparator),
            ("/api/orders/..%5ccache/users/1", EncodedSeparator),
            ("/api/orders/..%5Ccache/users/1", EncodedSeparator),
            ("/api/orders/..\\cache/users/1", Backslash),
            ("/api/orders\\..\\cache", Backslash),
            ("/api/orders/1;jsessionid=x", PathParameter),
            ("/api/orders/..;/cache/users/1", PathParameter),
            ("/api/orders/1%3bx", PathParameter),
            ("/api/orders/%252e%252e/cache/users/1", DoubleEncoding),
            ("/api/orders/..%252fcache/users/1", DoubleEncoding),
            ("/api/orders/1%00", Nul),
            ("/api/orders/%2e%2e%00/cache", Nul),
            ("/api/orders/1%0a", ControlCharacter),
            ("/api/orders/1%7F", ControlCharacter),
            ("/api/orders/1\u{1}", ControlCharacter),
            ("/api/orders/1%3fx=1", EncodedDelimiter),
            ("/api/orders/1%23x", EncodedDelimiter),
            ("/api/orders/%c0%ae%c0%ae/cache/users/1", InvalidUtf8),
            ("/api/orders/%C0%AE/1", InvalidUtf8),
            ("/api/orders/%e0%80%ae/1", InvalidUtf8),
            ("/api/orders/%c0%af/1", InvalidUtf8),
            ("/api/orders/%ff", InvalidUtf8),
            ("/api/orders/%2", MalformedEscape),
            ("/api/orders/%zz", MalformedEscape),
            ("/api/orders/1%", MalformedEscape),
            ("/api/%6frders/1", NeedlessEncoding('o')),
            ("/api/products/SKU%2d1", NeedlessEncoding('-')),
            ("/api/orders/1%2e", NeedlessEncoding('.')),
            ("/api/orders/...%2e", NeedlessEncoding('.')),
            ("/api/orders/1 2", InvalidCharacter(' ')),
            ("/api/orders/\"1\"", InvalidCharacter('"')),
            ("/api/orders/{1}", InvalidCharacter('{')),
            ("/api/orders/a|b", InvalidCharacter('|')),
            ("/api/orders/[1]", InvalidCharacter('[')),
            ("/api/products/café", InvalidCharacter('é')),
            ("api/orders/1", NotAbsolute),
            ("*", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (path, expected) in cases {
            assert_eq!(normalise(path), Err(expected), "{path:?}");
        }
    }

    #[test]
    fn paths_already_in_normal_form_pass_unchanged() {
        for path in [
            "/",
            "/healthz",
            "/api/orders",
            "/api/orders/",
            "/api/orders/0192f1c4-7e1a-7c3b-9d2e-5f6a7b8c9d0e",
            "/api/orders/0192f1c4-7e1a-7c3b-9d2e-5f6a7b8c9d0e/cancel",
            "/api/products/SKU-1",
            "/api/products/GATE-1A2B3C4D/stock",
            "/api/products/caf%C3%A9",
            "/api/products/caf%c3%a9",
            "/api/products/a%20b",
            "/api/users/ada@example.com",
            "/api/users/1/summary",
            "/api/auth/token",
            "/api/auth/keys/key-1:2/retire",
            "/api/orders/...",
            "/api/orders/.well-known",
            "/api/orders/a.b",
            "/.well-known/jwks.json",
            "/api/products/x~y_z!$&'()*+,=",
        ] {
            assert_eq!(
                normalise(path).map(|normal| normal.as_str().to_owned()),
                Ok(path.to_owned()),
                "{path:?}"
            );
        }
    }
}
