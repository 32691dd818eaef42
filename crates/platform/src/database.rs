//! Opening a service's own Postgres database, creating it first if it does not exist.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgPool};

/// How long a pooled connection may sit idle before it is checked with a ping on checkout.
const PING_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Connects to `url`, creating the database through the server's `postgres` database if it
/// is missing.
///
/// # Errors
/// When the URL is malformed, the server is unreachable, or the database cannot be created.
pub async fn connect_or_create(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let mut options = PgConnectOptions::from_str(url)
        .with_context(|| format!("{} is not a valid Postgres URL", conveyor::redact_url(url)))?;
    if is_loopback(&options) && !names_ssl_mode(url) {
        // Encrypting traffic that never leaves the machine costs CPU on both sides and
        // protects nothing; an `sslmode` in the URL (or PGSSLMODE) still decides.
        options = options.ssl_mode(PgSslMode::Disable);
    }
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
        // sqlx pings every connection it hands out, a round trip per checkout that a busy
        // service pays on every event and request. A connection used within the last
        // second was alive then (sqlx also pings it on return), so only one idle longer,
        // which a database restart may have ended, is pinged first.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to database {name}"))
}

/// Whether the server is on this machine: a loopback address or a Unix socket.
fn is_loopback(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    host.starts_with('/') || is_loopback_host(host)
}

/// Whether a URL's host names this machine: `localhost` or a loopback address (an IPv6
/// one in brackets or not).
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Whether the URL or the environment chose an SSL mode.
fn names_ssl_mode(url: &str) -> bool {
    std::env::var_os("PGSSLMODE").is_some()
        || url.split_once('?').is_some_and(|(_, query)| {
            query
                .split('&')
                .any(|pair| pair.starts_with("sslmode=") || pair.starts_with("ssl-mode="))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_url_is_named_without_its_password() {
        let url = "postgres://app:pa@ss#word@db:5432/orders";
        let message = conveyor::redact_url(url);
        assert!(!message.contains("pa@ss"), "{message}");
        assert!(message.starts_with("postgres://app:***@"), "{message}");
    }

    #[test]
    fn only_servers_on_this_machine_skip_tls() {
        let local = PgConnectOptions::from_str("postgres://postgres@127.0.0.1:5432/x").unwrap();
        let remote = PgConnectOptions::from_str("postgres://postgres@db.example:5432/x").unwrap();
        assert!(is_loopback(&local));
        assert!(!is_loopback(&remote));
        assert!(names_ssl_mode("postgres://h/x?sslmode=require"));
    }
}
