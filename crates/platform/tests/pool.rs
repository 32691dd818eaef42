//! The pool a service gets (`platform::connect_or_create`) against the real Postgres: it
//! skips the ping on connections in steady use, but never hands out one a restart ended
//! while it sat idle.

use std::time::Duration;

use conveyor_testkit::{TestDatabase, allow_connections};

#[tokio::test]
async fn a_connection_idle_through_a_database_restart_is_replaced_before_use() {
    let database = TestDatabase::new().await;
    let pool = platform::connect_or_create(&database.url(), 1)
        .await
        .unwrap();
    let before: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(before, 1);

    // The pool's one connection is idle; the restart ends it, and it stays in the pool.
    allow_connections(&database.name, false).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    allow_connections(&database.name, true).await;

    let after: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .expect("the pool replaced the connection the restart ended");
    assert_eq!(after, 1);
    pool.close().await;
}
