//! The runtime's own tables (outbox and inbox) in the service's database, schema `conveyor`.

use sqlx::PgPool;

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
];

/// The channel the outbox trigger notifies on each insert.
pub const OUTBOX_CHANNEL: &str = "conveyor_outbox";

/// Creates the `conveyor` schema with the outbox and inbox tables if they are missing.
///
/// # Errors
/// The database's error when a statement fails (no permission to create a schema, say).
pub async fn install(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK)
        .execute(&mut *tx)
        .await?;
    for statement in SCHEMA {
        sqlx::query(*statement).execute(&mut *tx).await?;
    }
    tx.commit().await
}
