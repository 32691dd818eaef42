//! The runtime's own tables (outbox and inbox) in the service's database, schema `conveyor`.

use sqlx::{PgConnection, PgPool};

/// Serialises concurrent installs (several services or test processes starting at once).
const INSTALL_LOCK: i64 = 0x636f_6e76_6579_6f72; // "conveyor"

/// Idempotent: every statement can run again on an installed database.
const SCHEMA: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS conveyor",
    "CREATE TABLE IF NOT EXISTS conveyor.outbox (
        id           BIGSERIAL PRIMARY KEY,
        event_id     UUID NOT NULL,
        event_type   TEXT NOT NULL,
        payload      BYTEA NOT NULL,
        trace        JSONB NOT NULL DEFAULT '{}',
        created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        published_at TIMESTAMPTZ
    )",
    "CREATE INDEX IF NOT EXISTS outbox_unpublished ON conveyor.outbox (id) WHERE published_at IS NULL",
    // A queue table: rows leave as fast as they come, so vacuum must keep up with the
    // churn rather than wait for a fifth of the table to be dead.
    "ALTER TABLE conveyor.outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000)",
    // What refusals a row met: one the broker keeps refusing is parked with its error
    // instead of blocking the rows behind it.
    "ALTER TABLE conveyor.outbox ADD COLUMN IF NOT EXISTS attempts INT NOT NULL DEFAULT 0",
    "ALTER TABLE conveyor.outbox ADD COLUMN IF NOT EXISTS last_error TEXT",
    "ALTER TABLE conveyor.outbox ADD COLUMN IF NOT EXISTS parked_at TIMESTAMPTZ",
    "CREATE INDEX IF NOT EXISTS outbox_published_at ON conveyor.outbox (published_at) WHERE published_at IS NOT NULL",
    "CREATE OR REPLACE FUNCTION conveyor.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN PERFORM pg_notify('conveyor_outbox', ''); RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON conveyor.outbox
     FOR EACH STATEMENT EXECUTE FUNCTION conveyor.notify_outbox()",
    // What the relay sent, without the bodies: published rows leave the outbox (a delete
    // costs the database far less than rewriting a row with its body), and this narrow
    // log keeps who sent what in which flow until the retention ends.
    "CREATE TABLE IF NOT EXISTS conveyor.published (
        event_id       UUID NOT NULL,
        event_type     TEXT NOT NULL,
        correlation_id UUID,
        subject        TEXT,
        created_at     TIMESTAMPTZ NOT NULL,
        published_at   TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    "CREATE INDEX IF NOT EXISTS published_by_correlation ON conveyor.published (correlation_id)",
    // Rows arrive in time order, so a block-range index serves the retention delete at a
    // fraction of a b-tree's cost per insert.
    "CREATE INDEX IF NOT EXISTS published_by_time ON conveyor.published USING brin (published_at)",
    "CREATE TABLE IF NOT EXISTS conveyor.inbox (
        consumer    TEXT NOT NULL,
        message_id  UUID NOT NULL,
        handled_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, message_id)
    )",
    // The retention purge finds old rows by time; rows arrive in time order, so a BRIN
    // index costs next to nothing to keep.
    "CREATE INDEX IF NOT EXISTS inbox_handled_at ON conveyor.inbox USING brin (handled_at)",
    // Which delivery was handled: 1 the first, more after retries (`conveyor saga trace`
    // shows it). Rows from before the column have none.
    "ALTER TABLE conveyor.inbox ADD COLUMN IF NOT EXISTS attempt INT",
    // Events to send later (`Outbox::add_at`, `Outbox::add_after`). A table of their own,
    // not outbox rows with a due time: a relay of an earlier release reads every outbox row
    // and would send them all at once during a rolling upgrade.
    // A calendar time's `due_at` is wall-clock time; a deadline's is on the watched clock
    // (wall clock less `schedule_clock.unwatched`), so an outage moves every deadline on by
    // one update of the clock row, not of each deadline.
    "CREATE TABLE IF NOT EXISTS conveyor.scheduled (
        id           BIGSERIAL PRIMARY KEY,
        event_id     UUID NOT NULL,
        event_type   TEXT NOT NULL,
        subject      TEXT,
        payload      BYTEA NOT NULL,
        trace        JSONB NOT NULL DEFAULT '{}',
        due_at       TIMESTAMPTZ NOT NULL,
        counts_watched_time_only BOOLEAN NOT NULL,
        created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
    )",
    "CREATE INDEX IF NOT EXISTS scheduled_calendar_due ON conveyor.scheduled (due_at)
     WHERE NOT counts_watched_time_only",
    "CREATE INDEX IF NOT EXISTS scheduled_deadline_due ON conveyor.scheduled (due_at)
     WHERE counts_watched_time_only",
    "CREATE INDEX IF NOT EXISTS scheduled_by_key ON conveyor.scheduled (event_type, subject)",
    "ALTER TABLE conveyor.scheduled SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000)",
    // When a relay last watched the schedule with the broker reachable, and how much time
    // in all nobody did (gaps longer than an outage's threshold).
    "CREATE TABLE IF NOT EXISTS conveyor.schedule_clock (
        id         INT PRIMARY KEY CHECK (id = 1),
        ticked_at  TIMESTAMPTZ NOT NULL,
        unwatched  INTERVAL NOT NULL
    )",
    "INSERT INTO conveyor.schedule_clock (id, ticked_at, unwatched)
     VALUES (1, clock_timestamp(), interval '0') ON CONFLICT (id) DO NOTHING",
];

/// The channel the outbox trigger notifies on each insert.
pub const OUTBOX_CHANNEL: &str = "conveyor_outbox";

/// The shape `SCHEMA` gives the store, recorded in `conveyor.installed`: raise it with every
/// change to `SCHEMA`, so that processes of the new release install it once.
const STORE_VERSION: i32 = 2;

/// Tries an install that met a running transaction's locks this often before failing.
const INSTALL_ATTEMPTS: u32 = 5;

/// Creates the `conveyor` schema with the outbox and inbox tables if they are missing, or
/// brings an older one up to date.
///
/// A process that finds the store current changes nothing and takes no lock: replicas start
/// beside running ones without stalling their handlers. Otherwise (a new database, a new
/// release's first process) the install locks the runtime's tables in the order its own
/// transactions take them (a handler's inbox row first, then the schedule's clock and rows,
/// then the outbox, then the log of what was sent), waits for the transactions of processes
/// already running, and tries again if it still met a lock it could not get in time. A
/// transaction that writes to the outbox and then schedules an event takes two of them in
/// the other order: should it meet an install, Postgres ends one of the two as a deadlock,
/// and either the install or the handler's batch is tried again.
///
/// # Errors
/// The database's error when a statement fails (no permission to create a schema, say).
pub async fn install(pool: &PgPool) -> Result<(), sqlx::Error> {
    if installed_version(&mut *pool.acquire().await?).await? >= STORE_VERSION {
        return Ok(());
    }
    let mut attempt = 1;
    loop {
        match install_locked(pool).await {
            Err(error) if attempt < INSTALL_ATTEMPTS && met_a_lock(&error) => {
                tracing::info!(%error, attempt, "The runtime's tables are busy; installing again shortly.");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// The store version recorded, 0 for a store installed before versions were (or none).
async fn installed_version(connection: &mut PgConnection) -> Result<i32, sqlx::Error> {
    let recorded: bool = sqlx::query_scalar("SELECT to_regclass('conveyor.installed') IS NOT NULL")
        .fetch_one(&mut *connection)
        .await?;
    if !recorded {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM conveyor.installed")
        .fetch_one(connection)
        .await
}

async fn install_locked(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK)
        .execute(&mut *tx)
        .await?;
    if installed_version(&mut tx).await? >= STORE_VERSION {
        // Another process installed it while this one waited for the lock.
        return tx.commit().await;
    }
    // The longest the install waits for a table lock before it gives up and tries again.
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await?;
    // The tables first, so that they can be locked before anything alters them.
    for statement in SCHEMA.iter().filter(|statement| creates_a_table(statement)) {
        sqlx::query(*statement).execute(&mut *tx).await?;
    }
    sqlx::query(
        "LOCK TABLE conveyor.inbox, conveyor.schedule_clock, conveyor.scheduled, conveyor.outbox,
             conveyor.published
         IN ACCESS EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await?;
    for statement in SCHEMA {
        sqlx::query(*statement).execute(&mut *tx).await?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS conveyor.installed (version INT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM conveyor.installed")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO conveyor.installed (version) VALUES ($1)")
        .bind(STORE_VERSION)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

fn creates_a_table(statement: &str) -> bool {
    statement.starts_with("CREATE SCHEMA") || statement.starts_with("CREATE TABLE")
}

/// A lock the install could not take: a deadlock (40P01) or its lock timeout (55P03).
fn met_a_lock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a of every statement: a change to `SCHEMA` changes it.
    fn schema_hash() -> u64 {
        SCHEMA
            .iter()
            .flat_map(|statement| statement.bytes().chain([0]))
            .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// Processes skip the install when the recorded version is current, so a changed
    /// `SCHEMA` under an unchanged `STORE_VERSION` would never reach a database installed
    /// before. Changing the schema: raise `STORE_VERSION`, then record the new pair here.
    #[test]
    fn a_changed_schema_comes_with_a_new_store_version() {
        assert_eq!((STORE_VERSION, schema_hash()), (2, 673_105_546_742_495_983));
    }
}
