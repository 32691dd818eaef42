//! A Postgres database of a test's own, for tests that need no broker (handler tests with
//! `conveyor::testing`), dropped when the test ends.

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::{database_url, drop_databases, postgres_admin_url};

/// A fresh database, migrated if asked, removed on drop.
pub struct TestDatabase {
    pub name: String,
    pool: PgPool,
}

impl TestDatabase {
    /// An empty database.
    ///
    /// # Panics
    /// When Postgres (`TEST_DATABASE_URL`, default the local server) cannot create it.
    pub async fn new() -> Self {
        let name = format!(
            "conveyor_test_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        create_database(&name).await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&database_url(&name))
            .await
            .unwrap();
        Self { name, pool }
    }

    /// A database with `migrator`'s migrations applied: a service's tables, as the service
    /// makes them at start.
    ///
    /// # Panics
    /// As [`TestDatabase::new`], or when a migration fails.
    pub async fn migrated(migrator: &Migrator) -> Self {
        let database = Self::new().await;
        migrator.run(&database.pool).await.unwrap();
        database
    }

    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    pub fn url(&self) -> String {
        database_url(&self.name)
    }
}

/// Creates the database `name` on the test server.
pub(crate) async fn create_database(name: &str) {
    let admin = PgPool::connect(&postgres_admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        drop_databases(vec![self.name.clone()]);
    }
}
