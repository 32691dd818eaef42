//! Which instance relays a database's outbox: the one holding a session-level advisory
//! lock. Every instance of a service runs a relay; one leads and the others stand by, so
//! adding replicas adds no polling, no wake-ups and no empty reads of the outbox. The lock
//! lives as long as its connection: when the leader dies, Postgres ends its session, and a
//! standby takes over within one poll interval.

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};

use crate::shutdown::Shutdown;

/// The lock the leading relay holds ("relay_lk"), beside the runtime's install lock.
const RELAY_LEADER_LOCK: i64 = 0x7265_6c61_795f_6c6b;

/// This instance leads while this connection holds the lock.
pub(super) struct Leadership {
    connection: PgConnection,
}

impl Leadership {
    /// Waits until this instance is elected, trying every `interval`; `None` when
    /// `shutdown` fires first.
    ///
    /// # Errors
    /// The database's error; the caller backs off and tries again.
    pub(super) async fn acquire(
        pool: &PgPool,
        interval: Duration,
        shutdown: &Shutdown,
    ) -> Result<Option<Self>, sqlx::Error> {
        // A connection of its own, outside the service's pool, kept between tries: a new
        // session each try would cost Postgres a backend per standby and interval.
        let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
        loop {
            let elected: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LEADER_LOCK)
                .fetch_one(&mut connection)
                .await?;
            if elected {
                return Ok(Some(Self { connection }));
            }
            if shutdown.sleep(interval).await {
                let _ = connection.close().await;
                return Ok(None);
            }
        }
    }

    /// Completes when leadership is lost: the lock's connection stopped answering.
    pub(super) async fn lost(&mut self, interval: Duration) -> sqlx::Error {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(error) = self.connection.ping().await {
                return error;
            }
        }
    }
}
