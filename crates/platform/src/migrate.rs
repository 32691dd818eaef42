//! A service's migrations, applied by one instance at a time, with the instances that wait
//! their turn waiting outside the database.
//!
//! sqlx's migrator waits for its advisory lock inside a statement, and a statement holds a
//! snapshot while it runs. `CREATE INDEX CONCURRENTLY` (a `-- no-transaction` migration)
//! waits until every snapshot older than its build has gone, so a replica that starts while
//! another builds an index waits for the builder while the builder waits for it. Postgres
//! ends that deadlock by failing one of the two: a replica that does not start, or an index
//! left INVALID and its migration recorded as applied. Here the same lock is taken with
//! `pg_try_advisory_lock`, asked again after a pause in which no statement runs.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgConnection;
use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// The pause between two asks for the migration lock.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// Applies `migrator`'s migrations to `pool`'s database, one instance at a time, not failing
/// on newer ones already applied (see [`tolerating_newer`]).
///
/// # Errors
/// When the database cannot be reached or a migration fails.
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> anyhow::Result<()> {
    let mut connection = pool
        .acquire()
        .await
        .context("no connection to migrate with")?;
    let key = lock_key(&mut connection).await?;
    take_lock(&mut connection, key).await?;
    // `run_direct` is `run` on a connection already held (sqlx's own way around `run`'s
    // "Acquire is not general enough" in a future that must be Send).
    let applied = tolerating_newer(migrator)
        .run_direct(None, &mut *connection, false)
        .await;
    // The lock is the session's: it would go with the connection, but the pool keeps that.
    let released = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *connection)
        .await;
    applied?;
    released.context("the migration lock could not be released")?;
    Ok(())
}

/// The advisory lock sqlx's migrator takes for this database, so instances of releases that
/// still migrate through sqlx's own locking take turns with these.
async fn lock_key(connection: &mut PgConnection) -> anyhow::Result<i64> {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(connection)
        .await?;
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    // sqlx-postgres's `generate_lock_id`, as of the sqlx this workspace pins.
    Ok(0x3d32_ad9e * i64::from(CRC_IEEE.checksum(database.as_bytes())))
}

async fn take_lock(connection: &mut PgConnection, key: i64) -> anyhow::Result<()> {
    loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await
            .context("cannot ask for the migration lock")?;
        if taken {
            return Ok(());
        }
        tokio::time::sleep(LOCK_RETRY).await;
    }
}

/// The service's migrations, not failing on newer ones already applied: in a rolling
/// upgrade, or a rollback, an instance of the older release starts on a database that a
/// newer one migrated. Migrations only add what the older release can ignore (expand now,
/// contract in a later release). sqlx's `migrate!` cannot say so itself, so the fields are
/// copied (they are public for that macro; sqlx is pinned in the workspace). Its own locking
/// is off: [`migrate`] holds the lock.
fn tolerating_newer(migrator: &Migrator) -> Migrator {
    Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: false,
        no_tx: migrator.no_tx,
        table_name: migrator.table_name.clone(),
        create_schemas: migrator.create_schemas.clone(),
    }
}
