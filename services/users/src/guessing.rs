//! Password guessing, limited where the passwords are checked: users counts failed sign-ins
//! per login and client address in its own database, so the limit holds whichever way an
//! attempt arrives (through the gateway, another route, straight to users) and however many
//! replicas share the work, where a limiter at the gateway's edge holds only for what passes
//! that one limiter.
//!
//! After [`SignInLimits::free_failures`] failures for one login from one address, each
//! further attempt waits: 1 s after that failure, twice as long after each further failure,
//! at most [`SignInLimits::max_delay`]. An attempt that comes too early is refused (429 with
//! `Retry-After`) without any lookup or hashing, and is not counted. The count is forgotten
//! [`SignInLimits::window`] after its last failure, and a success clears it.
//!
//! It is a delay, not a lock, and it is per address: someone who knows a victim's email can
//! slow down only their own guesses, never the victim's sign-in from another address. Unknown
//! logins are counted the same way as known ones, so the answers (401 or 429) do not tell
//! which logins exist, and probing unknown logins gains nothing.
//!
//! Each attempt is counted, in one statement, before its password is checked (a success
//! then deletes the count): attempts sent at once, to one replica or several, queue on the
//! count's row and cannot all pass before the first failure is recorded.

use std::time::Duration;

use conveyor::Shutdown;
use sqlx::PgPool;

/// How failed sign-ins slow down further attempts (users' settings `SIGN_IN_FAILURES`,
/// `SIGN_IN_WINDOW`, `SIGN_IN_MAX_DELAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimits {
    /// Failures for one login from one address before the next attempt must wait.
    pub free_failures: u32,
    /// How long after its last failure a count is forgotten.
    pub window: Duration,
    /// The longest wait between two attempts; the wait starts at 1 s and doubles.
    pub max_delay: Duration,
}

impl Default for SignInLimits {
    /// 5 failures, then waits of 1 s, 2 s, 4 s … up to 15 minutes; forgotten an hour after
    /// the last failure. A person who mistypes a few times never waits, and one who tried
    /// ten times waits half a minute; a guesser from one address gets 15 guesses in the
    /// first 17 minutes, then one per 15 minutes (the window is longer than the longest
    /// wait, so waiting it out never starts a new count), about 110 a day.
    fn default() -> Self {
        Self {
            free_failures: 5,
            window: Duration::from_secs(3600),
            max_delay: Duration::from_secs(900),
        }
    }
}

/// What the count says of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counted: check the password.
    Check,
    /// Too early after the last failures: refuse it without checking, and say when to
    /// come back.
    Wait(Duration),
}

/// Counts an attempt for `login` from `address` and says whether its password may be
/// checked: one statement, which takes the count's row lock, so replicas and concurrent
/// attempts see each other's counts. An attempt refused is not counted.
const COUNT_ATTEMPT: &str =
    "INSERT INTO sign_in_failures AS f (login, address, failures, last_failed_at, checked)
VALUES ($1, $2, 1, now(), true)
ON CONFLICT (login, address) DO UPDATE SET
    failures = CASE
        WHEN f.last_failed_at <= now() - make_interval(secs => $4) THEN 1
        WHEN now() < f.last_failed_at + sign_in_delay(f.failures, $3, $5) THEN f.failures
        ELSE f.failures + 1
    END,
    last_failed_at = CASE
        WHEN f.last_failed_at <= now() - make_interval(secs => $4) THEN now()
        WHEN now() < f.last_failed_at + sign_in_delay(f.failures, $3, $5) THEN f.last_failed_at
        ELSE now()
    END,
    checked = f.last_failed_at <= now() - make_interval(secs => $4)
        OR now() >= f.last_failed_at + sign_in_delay(f.failures, $3, $5)
RETURNING checked,
    EXTRACT(EPOCH FROM f.last_failed_at + sign_in_delay(f.failures, $3, $5) - now())::float8";

/// Counts one attempt for `login` from `address`; see [`COUNT_ATTEMPT`].
///
/// # Errors
/// When the database fails.
pub(crate) async fn count_attempt(
    pool: &PgPool,
    limits: &SignInLimits,
    login: &str,
    address: &str,
) -> Result<Verdict, sqlx::Error> {
    let (checked, wait_seconds): (bool, f64) = sqlx::query_as(COUNT_ATTEMPT)
        .bind(login)
        .bind(address)
        .bind(i32::try_from(limits.free_failures).unwrap_or(i32::MAX))
        .bind(limits.window.as_secs_f64())
        .bind(limits.max_delay.as_secs_f64())
        .fetch_one(pool)
        .await?;
    if checked {
        return Ok(Verdict::Check);
    }
    // Whole seconds, rounded up and at least one, as `Retry-After` counts them.
    let seconds = if wait_seconds.is_finite() && wait_seconds > 1.0 {
        wait_seconds.ceil()
    } else {
        1.0
    };
    Ok(Verdict::Wait(
        Duration::try_from_secs_f64(seconds).unwrap_or(limits.max_delay),
    ))
}

/// Forgets the count of `login` from `address`: its owner got the password right.
///
/// # Errors
/// When the database fails.
pub(crate) async fn forget(pool: &PgPool, login: &str, address: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_failures WHERE login = $1 AND address = $2")
        .bind(login)
        .bind(address)
        .execute(pool)
        .await?;
    Ok(())
}

/// Rows deleted per statement, so that no purge holds its locks for long.
const PURGE_CHUNK: u64 = 10_000;

/// Deletes the counts whose window has passed, a chunk at a time, every minute until
/// `shutdown` fires. A count past its window no longer delays anyone (the next attempt
/// starts a new one), so deleting it changes no answer; it only keeps the table as small as
/// the last window's failures. Every replica purges; their deletes do not conflict.
pub(crate) async fn purge_old(pool: PgPool, window: Duration, shutdown: Shutdown) {
    loop {
        while !shutdown.is_fired() {
            let purged = sqlx::query(
                "DELETE FROM sign_in_failures WHERE ctid IN (
                     SELECT ctid FROM sign_in_failures
                     WHERE last_failed_at < now() - make_interval(secs => $1) LIMIT $2)",
            )
            .bind(window.as_secs_f64())
            .bind(i64::try_from(PURGE_CHUNK).unwrap_or(i64::MAX))
            .execute(&pool)
            .await;
            match purged {
                Ok(done) if done.rows_affected() == PURGE_CHUNK => {}
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "Cannot delete old failed sign-in counts; trying again later.");
                    break;
                }
            }
        }
        if shutdown.sleep(Duration::from_secs(60)).await {
            return;
        }
    }
}
