//! Which database errors mean "the database is away, hold the batch and try again" and
//! which are the batch's own fault and will fail the same way every time.

/// Whether `error` says the database (or the way to it) is unavailable or busy for now:
/// connection and pool failures, SQLSTATE class 08 (connection exception), 53 (insufficient
/// resources), 57P (shutdown, cannot connect now), 57014 (statement cancelled, as by a
/// timeout), 40001 and 40P01 (serialization failure, deadlock) and 55P03 (lock not
/// available). Everything else (a constraint checked at commit, a permission, a transaction
/// left aborted by a handler) fails again on a retry.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => database.code().is_none_or(|code| {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || matches!(code.as_ref(), "57014" | "40001" | "40P01" | "55P03")
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_pool_failures_are_unavailable_and_others_are_not() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
