use std::time::Duration;

use conveyor::{Outbox, OutboxRelay, Shutdown};

use crate::child;
use conveyor_testkit::{TestEnv, event};

async fn commit_to_outbox(env: &TestEnv, numbers: std::ops::Range<i64>) {
    let events: Vec<_> = numbers.map(event).collect();
    let mut tx = env.pool.begin().await.unwrap();
    for chunk in events.chunks(1000) {
        Outbox::new().add_all(&mut tx, chunk).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn published_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM conveyor.published")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn committed_events_are_published_and_rolled_back_ones_never_are() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(Default::default()).await;
    let (stop_relay, relay_shutdown) = Shutdown::new();
    let relay = tokio::spawn(
        OutboxRelay::new(env.pool.clone(), env.amqp.clone(), env.names.clone()).run(relay_shutdown),
    );

    commit_to_outbox(&env, 0..100).await;
    let mut rolled_back = env.pool.begin().await.unwrap();
    Outbox::new()
        .add(&mut rolled_back, &event(1000))
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();

    env.wait_for_handled(100, Duration::from_secs(15)).await;
    stop_relay.fire();
    relay.await.unwrap();
    consumer.stop().await;
    assert_eq!(env.handled_and_distinct().await, (100, 100));
    let rolled_back_seen: i64 = sqlx::query_scalar("SELECT count(*) FROM handled WHERE n = 1000")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rolled_back_seen, 0);
    assert_eq!(published_count(&env).await, 100);
}

#[tokio::test]
async fn events_left_by_a_killed_relay_are_published_after_a_restart() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(Default::default()).await;
    commit_to_outbox(&env, 0..20_000).await;

    let mut relay_process = child::spawn("relay", &env.database_url(), &env.amqp.url());
    let wait_for_progress = async {
        while published_count(&env).await == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait_for_progress)
        .await
        .expect("the child relay publishes something");
    child::send_signal(&relay_process, "KILL");
    relay_process.wait().unwrap();
    let published_before_restart = published_count(&env).await;
    let (stop_relay, relay_shutdown) = Shutdown::new();
    let relay = tokio::spawn(
        OutboxRelay::new(env.pool.clone(), env.amqp.clone(), env.names.clone()).run(relay_shutdown),
    );

    env.wait_for_handled(20_000, Duration::from_secs(120)).await;
    stop_relay.fire();
    relay.await.unwrap();
    consumer.stop().await;
    assert!(
        published_before_restart < 20_000,
        "the kill came after everything was published, so it proved nothing"
    );
    assert_eq!(env.handled_and_distinct().await, (20_000, 20_000));
    assert_eq!(published_count(&env).await, 20_000);
}

#[tokio::test]
async fn the_leading_relay_purges_handled_and_sent_records_past_their_retention() {
    let env = TestEnv::new().await;
    conveyor::install(&env.pool).await.unwrap();
    // Two weeks and a day of history, one row an hour, in the inbox and in the sent log.
    sqlx::query(
        "INSERT INTO conveyor.inbox (consumer, message_id, handled_at)
         SELECT 'test', gen_random_uuid(), now() - make_interval(hours => h)
         FROM generate_series(0, 15 * 24) AS h",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO conveyor.published (event_id, event_type, created_at, published_at)
         SELECT gen_random_uuid(), 'test.event', now() - make_interval(hours => h),
                now() - make_interval(hours => h)
         FROM generate_series(0, 47) AS h",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let options = conveyor::RelayOptions {
        retention: Duration::from_secs(24 * 3600),
        inbox_retention: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    };
    let (stop_relay, relay_shutdown) = Shutdown::new();
    let relay = tokio::spawn(
        OutboxRelay::new(env.pool.clone(), env.amqp.clone(), env.names.clone())
            .with_options(options)
            .run(relay_shutdown),
    );

    let count = |sql: &'static str| {
        let pool = env.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let purged = async {
        while count(
            "SELECT count(*) FROM conveyor.inbox WHERE handled_at < now() - interval '7 days'",
        )
        .await
            > 0
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), purged)
        .await
        .expect("inbox rows older than the retention are purged");
    stop_relay.fire();
    relay.await.unwrap();
    // Within the retention nothing is touched: the first 7 days of hours, and 24 h of sends.
    assert_eq!(count("SELECT count(*) FROM conveyor.inbox").await, 7 * 24);
    assert_eq!(count("SELECT count(*) FROM conveyor.published").await, 24);
}
