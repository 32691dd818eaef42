//! Per-key serialization: a transaction-scoped Postgres advisory lock per (service, key),
//! so two workers or two processes of one service never handle events that share a key at
//! the same time. Locks end with the transaction (commit, rollback or a lost connection),
//! so a crashed process never leaves one behind.

use sqlx::PgConnection;

/// SQLSTATEs of a lost race for a lock, which retrying resolves: `lock_not_available`
/// (`lock_timeout` expired), `deadlock_detected`, `serialization_failure`.
const LOCK_CONFLICTS: [&str; 3] = ["55P03", "40P01", "40001"];

/// The advisory lock id of `key` in `service`.
///
/// FNV-1a over the bytes, because every replica, whatever build it runs, must map a key to
/// the same id (std's hasher promises no such thing). Another service's key, or an unrelated
/// advisory lock of the application, may collide with it; a collision only makes two
/// events wait for each other, never run together.
pub fn key_lock_id(service: &str, key: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = service.bytes().chain([0xff]).chain(key.bytes());
    let hash = bytes.fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The lock ids of `keys`, sorted and without repeats: taking them in one global order is
/// what keeps two batches from each waiting on a lock the other holds.
pub(crate) fn lock_ids<'k>(service: &str, keys: impl IntoIterator<Item = &'k str>) -> Vec<i64> {
    let mut ids: Vec<i64> = keys
        .into_iter()
        .map(|key| key_lock_id(service, key))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether every lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    All,
    /// Another transaction held one longer than `lock_timeout` (or waited on this one in a
    /// cycle); this transaction is aborted and must be rolled back.
    TimedOut,
}

/// Waits for every lock in `ids` (sorted), each for at most the transaction's `lock_timeout`.
///
/// # Errors
/// The database's error, other than a lock timeout.
pub(crate) async fn lock_all(tx: &mut PgConnection, ids: &[i64]) -> Result<Locked, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Locked::All);
    }
    // `unnest` yields the ids in array order, so the locks are taken in that order.
    let taken = sqlx::query("SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) AS id")
        .bind(ids)
        .execute(tx)
        .await;
    match taken {
        Ok(_) => Ok(Locked::All),
        Err(error) if is_lock_conflict(&error) => Ok(Locked::TimedOut),
        Err(error) => Err(error),
    }
}

/// Takes every lock in `ids` that is free, without waiting; `false` if any was held by
/// another transaction. Run it inside a savepoint and roll back to it on `false`: that
/// releases the ones it took.
///
/// # Errors
/// The database's error.
pub(crate) async fn try_lock_all(tx: &mut PgConnection, ids: &[i64]) -> Result<bool, sqlx::Error> {
    if ids.is_empty() {
        return Ok(true);
    }
    sqlx::query_scalar(
        "SELECT coalesce(bool_and(pg_try_advisory_xact_lock(id)), true) FROM unnest($1::bigint[]) AS id",
    )
    .bind(ids)
    .fetch_one(tx)
    .await
}

/// Whether `error` says a lock wait outlasted `lock_timeout`, or was a deadlock.
pub(crate) fn is_lock_conflict(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| LOCK_CONFLICTS.contains(&code.as_ref()))
}

/// Whether a handler's error was caused by a lost race for a lock, anywhere in its chain.
pub(crate) fn caused_by_lock_conflict(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(is_lock_conflict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_and_keyed_by_service() {
        // Fixed values: replicas built at different times must agree on them.
        assert_eq!(key_lock_id("payments", "order-1"), -6208908746464398349);
        assert_eq!(key_lock_id("", ""), -5_808_391_946_409_677_970);
        assert_ne!(
            key_lock_id("payments", "order-1"),
            key_lock_id("shipping", "order-1")
        );
        assert_ne!(key_lock_id("ab", "c"), key_lock_id("a", "bc"));
    }

    #[test]
    fn a_batch_takes_each_lock_once_in_ascending_order() {
        let ids = lock_ids("inventory", ["b", "a", "b", "c"]);
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
