//! Which database errors mean "the database is away, hold the batch and try again" and
//! which are the batch's own fault and will fail the same way every time.

/// What a database error says about trying the same work again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbFailure {
    /// The database (or the way to it) is unavailable or busy for now: hold the work and try
    /// again. Connection and pool failures, SQLSTATE class 08 (connection exception), 53
    /// (insufficient resources), 57P (shutdown, cannot connect now), 57014 (statement
    /// cancelled, as by a timeout), 40001 and 40P01 (serialization failure, deadlock) and
    /// 55P03 (lock not available), and a database error without a code.
    Unavailable,
    /// The database refuses the data it was given, and will every time: SQLSTATE class 22
    /// (data exception: 22021 a character the encoding cannot hold, such as NUL; 22001 a
    /// value too long; 22003 a number out of range; 22P02 text not of its type; 22P05
    /// `\u0000` in jsonb) and 54000 (program limit exceeded: an index row too large). The
    /// event that carried the data is at fault and no retry can mend it: it belongs in the
    /// dead-letter queue at once, with the reason, not in the retry tiers.
    RefusedData,
    /// Anything else (a constraint checked at commit, a permission, a transaction left
    /// aborted by a handler): most likely fails again on a retry.
    Other,
}

/// How `error` bears on a retry; see [`DbFailure`].
pub(crate) fn classify(error: &sqlx::Error) -> DbFailure {
    match error {
        sqlx::Error::Database(database) => match database.code() {
            None => DbFailure::Unavailable,
            Some(code) => classify_sqlstate(&code),
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbFailure::Unavailable,
        _ => DbFailure::Other,
    }
}

/// Whether SQLSTATE `code` says the database refused the data it was given, which fails the
/// same way however often it is tried: class 22, data exception (22021 a character the
/// encoding cannot hold, such as NUL; 22001 a value too long for its column; 22003 a number
/// out of range; 22P02 text that is not of its type; 22P05 `\u0000` in `jsonb`…), and 54000,
/// program limit exceeded (an index row too large, as for a very long unique key). One
/// definition for handlers (dead-lettered as `permanent`) and HTTP requests (a 422).
pub fn is_refused_data_code(code: &str) -> bool {
    code.starts_with("22") || code == "54000"
}

/// How a Postgres SQLSTATE bears on a retry.
fn classify_sqlstate(code: &str) -> DbFailure {
    if code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "57014" | "40001" | "40P01" | "55P03")
    {
        DbFailure::Unavailable
    } else if is_refused_data_code(code) {
        DbFailure::RefusedData
    } else {
        DbFailure::Other
    }
}

/// Whether `error` says the database (or the way to it) is unavailable or busy for now
/// ([`DbFailure::Unavailable`]). Everything else (a constraint checked at commit, a
/// permission, data refused, a transaction left aborted by a handler) fails again on a retry.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    classify(error) == DbFailure::Unavailable
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

    #[test]
    fn data_the_database_refuses_is_permanent_and_an_outage_is_not() {
        for code in ["22021", "22001", "22003", "22P02", "22P05", "54000"] {
            assert_eq!(classify_sqlstate(code), DbFailure::RefusedData, "{code}");
        }
        for code in [
            "08006", "53300", "57P01", "57014", "40001", "40P01", "55P03",
        ] {
            assert_eq!(classify_sqlstate(code), DbFailure::Unavailable, "{code}");
        }
        // Constraints, permissions and the other program limits are neither.
        for code in ["23505", "23514", "42501", "25P02", "54001"] {
            assert_eq!(classify_sqlstate(code), DbFailure::Other, "{code}");
        }
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbFailure::Unavailable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbFailure::Other);
    }
}
