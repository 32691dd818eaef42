//! Publishing a table's current state again, so a service whose cached copy is empty or
//! damaged can rebuild it: a chunk of rows per transaction, so a large table never becomes
//! one huge transaction. A row changed meanwhile is also sent by its own change, and copies
//! keep the newest version.

use conveyor::{Envelope, Outbox};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres};

use crate::http::ApiError;

/// Rows read and added to the outbox per transaction.
const CHUNK: i64 = 1000;

/// Adds `events(row)` to the outbox for every row, a chunk per transaction, and answers how
/// many events it added. `select` pages by key: `$1` is the last key of the previous chunk (NULL
/// for the first), `$2` the chunk size, and the rows come in key order.
///
/// # Errors
/// The database's, or the outbox's (an event that breaks its contract).
pub async fn republish<Row, Key>(
    pool: &PgPool,
    outbox: &Outbox,
    select: &'static str,
    key: impl Fn(&Row) -> Key,
    events: impl Fn(&Row) -> Vec<Envelope>,
) -> Result<usize, ApiError>
where
    Row: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    Key: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
{
    let mut after: Option<Key> = None;
    let mut republished = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows: Vec<Row> = sqlx::query_as(select)
            .bind(after)
            .bind(CHUNK)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(republished);
        };
        after = Some(key(last));
        let events: Vec<Envelope> = rows.iter().flat_map(&events).collect();
        outbox.add_all(&mut tx, &events).await?;
        tx.commit().await?;
        republished += events.len();
    }
}
