//! Installing the runtime's tables beside processes already running on them, as a new
//! replica or a new release's first process does: it must neither deadlock with their
//! handlers nor lock them out when there is nothing to install.

use std::time::Duration;

use conveyor_testkit::TestEnv;

/// A store from a release before versions were recorded: every table there, no marker.
async fn forget_the_version(env: &TestEnv) {
    sqlx::query("DROP TABLE conveyor.installed")
        .execute(&env.pool)
        .await
        .unwrap();
}

/// A handler's transaction claims its event in the inbox, then emits to the outbox, while a
/// new process installs. The install waits for the inbox and takes the outbox only after it:
/// the handler commits and the install completes. (Failed before: the install altered the
/// outbox first, then waited for the inbox, and the handler's outbox insert closed a
/// deadlock that failed the new process's start.)
#[tokio::test]
async fn an_install_beside_a_running_handler_waits_for_it_and_neither_deadlocks() {
    let env = TestEnv::new().await;
    forget_the_version(&env).await;
    let mut handler = env.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO conveyor.inbox (consumer, message_id) VALUES ('test', gen_random_uuid())",
    )
    .execute(&mut *handler)
    .await
    .unwrap();

    let pool = env.pool.clone();
    let install = tokio::spawn(async move { conveyor::install(&pool).await });
    // Time for the install to reach the tables the handler holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let emitted = sqlx::query(
        "INSERT INTO conveyor.outbox (event_id, event_type, payload) VALUES (gen_random_uuid(), 'test.emitted', '\\x7b7d')",
    )
    .execute(&mut *handler)
    .await;
    let committed = match emitted {
        Ok(_) => handler.commit().await,
        Err(error) => Err(error),
    };
    let installed = tokio::time::timeout(Duration::from_secs(30), install)
        .await
        .expect("the install ends once the handler committed")
        .unwrap();

    committed.expect("the handler's transaction commits");
    installed.expect("the install succeeds");
    let version: i32 = sqlx::query_scalar("SELECT version FROM conveyor.installed")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(version >= 1);
}

/// A process that finds the store current takes no lock: it starts while another
/// transaction holds the outbox exclusively (in production, any long writer).
#[tokio::test]
async fn an_install_of_a_current_store_takes_no_lock() {
    let env = TestEnv::new().await;
    let mut holder = env.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE conveyor.outbox, conveyor.inbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .unwrap();

    let installed =
        tokio::time::timeout(Duration::from_secs(30), conveyor::install(&env.pool)).await;

    holder.rollback().await.unwrap();
    installed
        .expect("the install did not wait for the tables")
        .unwrap();
}
