//! An instance of an older release starting on a database that a newer release migrated,
//! as happens in a rolling upgrade or a rollback.

use std::time::Duration;

use crate::helpers::start;

/// Every service starts on a database holding a migration its release does not know (a
/// newer release's, applied by an instance already upgraded), and works. Before, sqlx
/// refused to start with "migration … was previously applied but is missing".
#[tokio::test]
async fn a_service_starts_on_a_database_a_newer_release_has_migrated() {
    let services = ["users", "inventory"];
    let mut system = start(&services, Duration::from_secs(60)).await;
    for service in services {
        let pool = sqlx::PgPool::connect(&system.database_url(service))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations
                 (version, description, success, checksum, execution_time)
             VALUES (99991231000000, 'a newer release''s migration', true, '\\x00', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    system.restart(&services, |_| {}).await;
    let user = system.user("FR", 1_000).await;
    let sku = system.product(500, 3).await;
    system.stop().await;

    assert!(!user.is_empty() && !sku.is_empty(), "both services answer");
}
