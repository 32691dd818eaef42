//! Opening a service's own Postgres database, creating it first if it does not exist.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Connects to `url`, creating the database through the server's `postgres` database if it
/// is missing.
///
/// # Errors
/// When the URL is malformed, the server is unreachable, or the database cannot be created.
pub async fn connect_or_create(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{url} is not a valid Postgres URL"))?;
    let name = options
        .get_database()
        .context("the database URL names no database")?
        .to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("cannot reach Postgres for {name}: is it running, and does the URL's host and user match it?"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut admin)
            .await;
        // Another process may have created it meanwhile; connecting below tells.
        if let Err(error) = created {
            tracing::debug!(%error, "CREATE DATABASE failed.");
        }
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to database {name}"))
}
