//! Migrations with several instances starting at once, against the real Postgres: one
//! migrates at a time, taking turns with releases that still lock through sqlx, and an index
//! built concurrently finishes while another instance waits its turn.

use std::path::PathBuf;
use std::time::Duration;

use conveyor_testkit::TestEnv;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{PgPool, postgres::PgPoolOptions};

/// A migrator of `files` (name, SQL), written to a folder of this test's own.
async fn migrator(files: &[(&str, &str)]) -> (Migrator, PathBuf) {
    let folder = std::env::temp_dir().join(format!("conveyor-migrate-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    for (name, sql) in files {
        std::fs::write(folder.join(name), sql).unwrap();
    }
    let migrator = Migrator::new(folder.as_path()).await.unwrap();
    (migrator, folder)
}

/// A pool of its own on the test's database, as another instance has.
async fn instance(env: &TestEnv) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&conveyor_testkit::database_url(&env.database))
        .await
        .unwrap()
}

/// Whether the index `name` is valid (usable and enforced), if it exists.
async fn index_valid(pool: &PgPool, name: &str) -> Option<bool> {
    sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)")
        .bind(name)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// An instance migrating an index `CONCURRENTLY` while a second starts: the build waits
/// for no snapshot of the second, which waits outside the database. (sqlx's own locking
/// waits inside a statement: Postgres then finds a deadlock and fails one of the two.)
#[tokio::test]
async fn an_instance_waiting_its_turn_lets_an_index_be_built_concurrently() {
    let env = TestEnv::new().await;
    sqlx::query("CREATE TABLE items (id INT)")
        .execute(&env.pool)
        .await
        .unwrap();
    let (migrator, folder) = migrator(&[(
        "0001_items_by_id.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY items_by_id ON items (id);\n",
    )])
    .await;
    let migrator: &'static Migrator = Box::leak(Box::new(migrator));

    // A write in flight keeps the first instance's build waiting, holding the lock.
    let mut writer = env.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO items VALUES (1)")
        .execute(&mut *writer)
        .await
        .unwrap();
    let (one, two) = (instance(&env).await, instance(&env).await);
    let first = tokio::spawn(async move { platform::migrate(&one, migrator).await });
    let building = conveyor_testkit::wait_until(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND query LIKE '%CREATE INDEX CONCURRENTLY%'
               AND wait_event_type = 'Lock'",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap()
            == 1
    })
    .await;
    assert!(building, "the first instance never began its build");
    let second = tokio::spawn(async move { platform::migrate(&two, migrator).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.commit().await.unwrap();

    let within = Duration::from_secs(30);
    let first = tokio::time::timeout(within, first)
        .await
        .expect("the first instance hangs");
    let second = tokio::time::timeout(within, second)
        .await
        .expect("the second instance hangs");
    first
        .unwrap()
        .expect("the first instance's migration failed");
    second
        .unwrap()
        .expect("the second instance's migration failed");
    assert_eq!(index_valid(&env.pool, "items_by_id").await, Some(true));
    std::fs::remove_dir_all(folder).unwrap();
}

/// An instance of a release that migrates through sqlx's own lock holds it: this one waits
/// for it, and goes on once it is released.
#[tokio::test]
async fn the_lock_is_the_one_sqlx_takes() {
    let env = TestEnv::new().await;
    let (migrator, folder) =
        migrator(&[("0001_things.sql", "CREATE TABLE things (id INT);\n")]).await;
    let migrator: &'static Migrator = Box::leak(Box::new(migrator));
    let mut older = env.pool.acquire().await.unwrap();
    older.lock().await.unwrap();
    let pool = instance(&env).await;
    let waiting = tokio::spawn(async move { platform::migrate(&pool, migrator).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "migrated while another release held the lock"
    );
    older.unlock().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("still waiting once the lock was released")
        .unwrap()
        .unwrap();
    let things: Option<String> = sqlx::query_scalar("SELECT to_regclass('things')::text")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(things.as_deref(), Some("things"));
    std::fs::remove_dir_all(folder).unwrap();
}
