//! Database errors caused by the data itself: they fail the same way however often the
//! same data is tried, so they are the request's fault (a 422 from `ApiError`), never the
//! database being away. Public through `input`, which re-exports these functions.

/// Whether SQLSTATE `code` says the database refused the data it was given, which fails the
/// same way however often it is tried: class 22, data exception (22021 a character the
/// encoding cannot hold, such as NUL; 22001 a value too long for its column; 22003 a number
/// out of range; 22P02 text that is not of its type; 22P05 `\u0000` in `jsonb`…), and 54000,
/// program limit exceeded (an index row too large, as for a very long unique key).
pub fn is_refused_data_code(code: &str) -> bool {
    code.starts_with("22") || code == "54000"
}

/// The SQLSTATE of `error` when the database refused the data it was given (see
/// [`is_refused_data_code`]); `None` for any other error (connections, timeouts, conflicts).
pub fn refused_data(error: &sqlx::Error) -> Option<String> {
    let code = error.as_database_error()?.code()?;
    is_refused_data_code(&code).then(|| code.into_owned())
}

/// As [`refused_data`], for a database error anywhere in `error`'s chain of causes.
pub fn refused_data_in(error: &anyhow::Error) -> Option<String> {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .find_map(refused_data)
}
