//! Database errors caused by the data itself: they fail the same way however often the
//! same data is tried, so they are the request's fault (a 422 from `ApiError`), never the
//! database being away. Public through `input`, which re-exports these functions.

use conveyor::is_refused_data_code;

/// The SQLSTATE of `error` when the database refused the data it was given (see
/// [`conveyor::is_refused_data_code`]); `None` for any other error (connections, timeouts, conflicts).
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
