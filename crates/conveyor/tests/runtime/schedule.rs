//! Scheduled delivery: events written now, in the caller's transaction, and published when
//! due, by whichever relay leads, once each.

use std::str::FromStr;
use std::time::Duration;

use conveyor::{Outbox, OutboxRelay, Shutdown, ShutdownTrigger};
use conveyor_testkit::{EVENT_TYPE, TestEnv, event, wait_until};
use tokio::task::JoinHandle;

fn start_relay(env: &TestEnv) -> (ShutdownTrigger, JoinHandle<()>) {
    let (stop, shutdown) = Shutdown::new();
    let relay = OutboxRelay::new(env.pool.clone(), env.amqp.clone(), env.names.clone());
    (stop, tokio::spawn(relay.run(shutdown)))
}

async fn stop_relay((stop, relay): (ShutdownTrigger, JoinHandle<()>)) {
    stop.fire();
    relay.await.unwrap();
}

/// Event numbers handled, each with how long after its due time it arrived (seconds,
/// the database's clock), as recorded in the test's `due` table.
async fn lateness(env: &TestEnv) -> Vec<(i64, f64)> {
    sqlx::query_as(
        "SELECT handled.n, extract(epoch FROM handled.handled_at - due.at)::float8
         FROM handled JOIN due ON due.n = handled.n ORDER BY handled.n",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

async fn create_due_table(env: &TestEnv) {
    sqlx::query("CREATE TABLE due (n BIGINT PRIMARY KEY, at TIMESTAMPTZ NOT NULL)")
        .execute(&env.pool)
        .await
        .unwrap();
}

/// Schedules events `numbers`, half at a calendar time and half after a delay, both
/// `seconds` from now, and records each one's due time.
async fn schedule(env: &TestEnv, numbers: std::ops::Range<i64>, seconds: f64) {
    let mut tx = env.pool.begin().await.unwrap();
    let at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT clock_timestamp() + make_interval(secs => $1)")
            .bind(seconds)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    for n in numbers {
        if n % 2 == 0 {
            Outbox::new().add_at(&mut tx, &event(n), at).await.unwrap();
        } else {
            let delay = Duration::from_secs_f64(seconds);
            Outbox::new()
                .add_after(&mut tx, &event(n), delay)
                .await
                .unwrap();
        }
    }
    sqlx::query(
        "INSERT INTO due (n, at)
         SELECT n, CASE WHEN counts_watched_time_only
                        THEN due_at + make_interval(secs => extract(epoch FROM clock.unwatched)::float8) ELSE due_at END
         FROM conveyor.scheduled JOIN conveyor.schedule_clock AS clock ON clock.id = 1
         JOIN LATERAL (SELECT substring(subject FROM 6)::bigint AS n) AS key ON true
         WHERE event_type = $1
         ON CONFLICT (n) DO NOTHING",
    )
    .bind(EVENT_TYPE)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Two relays share the schedule as they share the outbox: every event arrives once, none
/// before it is due.
#[tokio::test]
async fn scheduled_events_arrive_once_each_and_never_before_they_are_due() {
    let env = TestEnv::new().await;
    create_due_table(&env).await;
    let consumer = env.start_consumer(Default::default()).await;
    let relays = [start_relay(&env), start_relay(&env)];
    schedule(&env, 0..200, 3.0).await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        env.handled_count().await,
        0,
        "nothing arrives before it is due"
    );
    env.wait_for_handled(200, Duration::from_secs(20)).await;
    for relay in relays {
        stop_relay(relay).await;
    }
    consumer.stop().await;

    assert_eq!(env.handled_and_distinct().await, (200, 200));
    let early: Vec<(i64, f64)> = lateness(&env)
        .await
        .into_iter()
        .filter(|(_, late)| *late < 0.0)
        .collect();
    assert!(early.is_empty(), "arrived before due: {early:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM conveyor.scheduled")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "every scheduled event left the schedule");
}

/// A schedule commits with its transaction and is cancelled by its key in another.
#[tokio::test]
async fn a_rolled_back_or_cancelled_schedule_never_fires() {
    let env = TestEnv::new().await;
    create_due_table(&env).await;
    let consumer = env.start_consumer(Default::default()).await;
    let relay = start_relay(&env);
    let mut rolled_back = env.pool.begin().await.unwrap();
    Outbox::new()
        .add_after(&mut rolled_back, &event(100), Duration::from_millis(500))
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    schedule(&env, 0..4, 1.5).await;

    let mut cancel = env.pool.begin().await.unwrap();
    let outbox = Outbox::new();
    let cancelled = outbox
        .cancel_scheduled(&mut cancel, EVENT_TYPE, "item-1")
        .await
        .unwrap();
    let other_type = outbox
        .cancel_scheduled(&mut cancel, "test.other", "item-2")
        .await
        .unwrap();
    cancel.commit().await.unwrap();
    assert_eq!(
        (cancelled, other_type),
        (1, 0),
        "cancelled by type and subject"
    );

    env.wait_for_handled(3, Duration::from_secs(20)).await;
    // All were due at once: a cancelled one that fired would have come with them.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_relay(relay).await;
    consumer.stop().await;
    let handled: Vec<i64> = sqlx::query_scalar("SELECT n FROM handled ORDER BY n")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(handled, [0, 2, 3]);
}

/// After an outage (simulated: nobody watched for a minute), an overdue calendar time is
/// sent at once, while a deadline moves on by the minute nobody watched and is not: the
/// clock's unwatched time grows by the gap, and deadlines are due on the watched clock.
#[tokio::test]
async fn after_an_outage_deadlines_move_on_and_calendar_times_do_not() {
    let env = TestEnv::new().await;
    create_due_table(&env).await;
    let consumer = env.start_consumer(Default::default()).await;
    // Event 0 at a calendar time, event 1 after a delay: both due in 4 s.
    schedule(&env, 0..2, 4.0).await;
    // As if both had been written a minute ago and no relay had run since.
    sqlx::query("UPDATE conveyor.scheduled SET due_at = due_at - interval '60 s'")
        .execute(&env.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE conveyor.schedule_clock SET ticked_at = clock_timestamp() - interval '60 s'",
    )
    .execute(&env.pool)
    .await
    .unwrap();

    let relay = start_relay(&env);
    env.wait_for_handled(1, Duration::from_secs(20)).await;
    let first: Vec<i64> = sqlx::query_scalar("SELECT n FROM handled")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        first,
        [0],
        "the overdue calendar time is sent at once, alone"
    );
    let deadline_left: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM due_at + make_interval(secs => extract(epoch FROM clock.unwatched)::float8)
                                   - clock_timestamp())::float8
         FROM conveyor.scheduled, conveyor.schedule_clock AS clock",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        deadline_left > 1.0,
        "the deadline moved on by the minute nobody watched ({deadline_left:.1} s left)"
    );
    env.wait_for_handled(2, Duration::from_secs(20)).await;
    stop_relay(relay).await;
    consumer.stop().await;
}

/// A real outage: the broker refuses the test's user for eight seconds while a deadline
/// (due 3 s after it was written) and a calendar time (due after 5 s) wait. The calendar
/// time is sent as soon as a relay is back; the deadline only after the time it had left
/// when the broker went, which the outage did not use up.
#[tokio::test]
async fn a_broker_outage_does_not_use_up_a_deadline() {
    let env = TestEnv::new().await;
    create_due_table(&env).await;
    let consumer = env.start_consumer(Default::default()).await;
    let relay = start_relay(&env);
    // The relay's session is open, so that the outage is one of an established relay.
    let watching = wait_until(Duration::from_secs(15), || async {
        let watched: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM clock_timestamp() - ticked_at)::float8
             FROM conveyor.schedule_clock",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
        watched < 1.0
    })
    .await;
    assert!(watching, "the relay watches the schedule");
    // The deadline falls due during the outage, the calendar time later in it: a relay that
    // went on watching would move the deadline while the broker is away and send both
    // together once it is back.
    let mut tx = env.pool.begin().await.unwrap();
    let calendar_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT clock_timestamp() + interval '5 s'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let outbox = Outbox::new();
    outbox
        .add_at(&mut tx, &event(0), calendar_at)
        .await
        .unwrap();
    outbox
        .add_after(&mut tx, &event(1), Duration::from_secs(3))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.broker
        .ctl(&["clear_permissions", "-p", &env.vhost, "guest"]);
    env.close_all_connections();
    tokio::time::sleep(Duration::from_secs(8)).await;
    env.broker.ctl(&[
        "set_permissions",
        "-p",
        &env.vhost,
        "guest",
        ".*",
        ".*",
        ".*",
    ]);

    env.wait_for_handled(2, Duration::from_secs(30)).await;
    stop_relay(relay).await;
    consumer.stop().await;
    let arrivals: Vec<(i64, f64)> =
        sqlx::query_as("SELECT n, extract(epoch FROM handled_at)::float8 FROM handled ORDER BY n")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let [(0, calendar), (1, deadline)] = arrivals[..] else {
        panic!("expected events 0 and 1 once each, got {arrivals:?}");
    };
    assert!(
        deadline - calendar > 1.5,
        "the deadline kept the time it had left: it came {:.1} s after the calendar time",
        deadline - calendar
    );
}

/// The relay finds due events by the due-time index, however many wait for later: the
/// schedule's table is never scanned whole.
#[tokio::test]
async fn the_relay_finds_due_events_by_index_among_many_not_due() {
    let env = TestEnv::new().await;
    create_due_table(&env).await;
    sqlx::query(
        "INSERT INTO conveyor.scheduled
             (event_id, event_type, subject, payload, due_at, counts_watched_time_only)
         SELECT gen_random_uuid(), 'test.later', 'later-' || n, '\\x7b7d',
                clock_timestamp() + interval '1 hour', n % 2 = 0
         FROM generate_series(1, 100000) AS n",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    schedule(&env, 0..10, 0.0).await;
    sqlx::query("ANALYZE conveyor.scheduled")
        .execute(&env.pool)
        .await
        .unwrap();
    // As if a relay had watched until now: no outage to count.
    sqlx::query("UPDATE conveyor.schedule_clock SET ticked_at = clock_timestamp()")
        .execute(&env.pool)
        .await
        .unwrap();
    sqlx::query("SELECT pg_stat_reset_single_table_counters('conveyor.scheduled'::regclass)")
        .execute(&env.pool)
        .await
        .unwrap();

    let consumer = env.start_consumer(Default::default()).await;
    // The relay's own sessions: a backend reports its table statistics for certain only
    // when it ends.
    let options = sqlx::postgres::PgConnectOptions::from_str(&env.database_url())
        .unwrap()
        .application_name("relay under watch");
    let relay_pool = sqlx::PgPool::connect_with(options).await.unwrap();
    let (stop, shutdown) = Shutdown::new();
    let relay = OutboxRelay::new(relay_pool.clone(), env.amqp.clone(), env.names.clone());
    let relay = tokio::spawn(relay.run(shutdown));
    env.wait_for_handled(10, Duration::from_secs(20)).await;
    stop_relay((stop, relay)).await;
    relay_pool.close().await;
    consumer.stop().await;
    let sessions_ended = wait_until(Duration::from_secs(15), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'relay under watch'",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
        open == 0
    })
    .await;
    assert!(sessions_ended, "the relay's sessions end");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Rows read by sequential scans, not how many there were: a backend of the set-up may
    // report its scans (the index builds of the install, on the empty table) up to seconds
    // late, after the counters were reset.
    let (rows_read_by_table_scans, index_scans): (i64, i64) = sqlx::query_as(
        "SELECT seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables
         WHERE relid = 'conveyor.scheduled'::regclass",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(index_scans > 0, "the relay's index scans are reported");
    // Each pass reads the due entries and stops: none walks the 100,000 due later.
    let due_entries_read: i64 = sqlx::query_scalar(
        "SELECT sum(idx_tup_read)::bigint FROM pg_stat_user_indexes
         WHERE indexrelname IN ('scheduled_calendar_due', 'scheduled_deadline_due')",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        due_entries_read < 10_000,
        "the relay read {due_entries_read} entries of the due-time index"
    );
    assert!(
        rows_read_by_table_scans < 100_000,
        "the relay scanned the whole schedule ({rows_read_by_table_scans} rows read by table scans)"
    );
    assert_eq!(env.handled_count().await, 10);
}
