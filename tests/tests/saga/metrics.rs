//! `GET /metrics`, read from service binaries that each run as a process of their own.
//!
//! The registry is process-wide: services started inside this test binary share one with
//! every test running beside them. A service binary has its own, so every count read here
//! is what this test's traffic did, and each check is an exact number. Faults are injected
//! in the service's database (a trigger that fails a chosen order's reservation a chosen
//! number of times), so a retry, a rolled-back batch and a failed commit are certain, not
//! likely.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conveyor::{Envelope, Names};
use conveyor_testkit::TestEnv;
use events_schema::orders::{OrderCreatedV1, PricedItem};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use serde_json::json;
use sqlx::PgPool;
use system::ServiceName;

const USERS: ServiceName = ServiceName::USERS;
const INVENTORY: ServiceName = ServiceName::INVENTORY;
const ORDERS: ServiceName = ServiceName::ORDERS;
const PAYMENTS: ServiceName = ServiceName::PAYMENTS;
const SHIPPING: ServiceName = ServiceName::SHIPPING;
use system::scenario::Api;
use uuid::Uuid;

use crate::processes::ServiceProcess;

const CONSUMED: &str = "conveyor_events_consumed_total";
const PUBLISHED: &str = "conveyor_events_published_total";
const HANDLER_RUNS: &str = "conveyor_handler_duration_seconds_count";
const BACKLOG: &str = "conveyor_outbox_backlog";
const OLDEST_UNSENT: &str = "conveyor_outbox_oldest_unsent_age_seconds";
const PARKED: &str = "conveyor_outbox_parked";
const OLDEST_PARKED: &str = "conveyor_outbox_oldest_parked_age_seconds";
const LAG: &str = "conveyor_consumer_lag_messages";
const SCHEDULED_DUE: &str = "conveyor_scheduled_due";
const LONGEST_OVERDUE: &str = "conveyor_scheduled_longest_overdue_seconds";

/// Each service's database pool, small: a test of processes may run beside others.
const POOL_SIZE: u32 = 4;
/// How long traffic may take to be handled, sent and sampled (every 5 s).
const SETTLE: Duration = Duration::from_secs(60);
/// Where a client of a service this test does not run sends its calls; nothing answers.
const NOBODY: &str = "http://127.0.0.1:9";

/// What each order moves by exactly one, in the process that takes the step: the metric, and
/// the labels its series has (`key=value`, comma-separated; the others are summed over).
const STEPS_OF_AN_ORDER: [(ServiceName, &str, &str); 16] = [
    (
        ORDERS,
        "http_requests_total",
        "service=orders,route=/orders,method=POST,status=201",
    ),
    (ORDERS, PUBLISHED, "event_type=order.created"),
    (
        INVENTORY,
        CONSUMED,
        "service=inventory,event_type=order.created,outcome=handled",
    ),
    (
        INVENTORY,
        HANDLER_RUNS,
        "service=inventory,event_type=order.created",
    ),
    (INVENTORY, PUBLISHED, "event_type=inventory.reserved"),
    (
        PAYMENTS,
        CONSUMED,
        "service=payments,event_type=inventory.reserved,outcome=handled",
    ),
    (PAYMENTS, PUBLISHED, "event_type=payment.captured"),
    (
        SHIPPING,
        CONSUMED,
        "service=shipping,event_type=payment.captured,outcome=handled",
    ),
    (SHIPPING, PUBLISHED, "event_type=shipment.scheduled"),
    (
        ORDERS,
        CONSUMED,
        "service=orders,event_type=shipment.scheduled,outcome=handled",
    ),
    (ORDERS, PUBLISHED, "event_type=order.confirmed"),
    (
        ORDERS,
        "conveyor_saga_outcomes_total",
        "outcome=confirmed,reason=",
    ),
    (
        ORDERS,
        "conveyor_saga_duration_seconds_count",
        "outcome=confirmed",
    ),
    (ORDERS, "conveyor_flow_runs_started_total", "flow=order"),
    (
        ORDERS,
        "conveyor_flow_runs_ended_total",
        "flow=order,outcome=success,reason=",
    ),
    (
        ORDERS,
        "conveyor_flow_run_duration_seconds_count",
        "flow=order,outcome=success",
    ),
];

/// Orders placed through the API, every service a process of its own: each step of the
/// saga is counted once per order, by the process that took it, and no failure is counted.
#[tokio::test]
async fn each_step_of_known_orders_is_counted_once_by_the_process_that_took_it() {
    const PLACED: i64 = 3;
    let system = Processes::start(&[INVENTORY, ORDERS, PAYMENTS, SHIPPING], &[]).await;
    let user = system.customer().await;
    let sku = system.product(10).await;
    system.wait_for_copies(&user, &sku).await;
    let mut before = BTreeMap::new();
    for service in ServiceName::all() {
        before.insert(service, scrape(system.url(service)).await);
    }
    let mut paths = Vec::new();
    for _ in 0..PLACED {
        let body = json!({ "user_id": user, "items": [{ "sku": sku, "quantity": 1 }] });
        let placed = system.api.post("orders", "/orders", &body).await.unwrap();
        paths.push(format!("/orders/{}", placed["id"].as_str().unwrap()));
    }
    for path in &paths {
        eventually(&format!("{path} ends"), || async {
            system.api.get("orders", path).await.unwrap()["status"] != "pending"
        })
        .await;
        let order = system.api.get("orders", path).await.unwrap();
        assert_eq!(order["status"], "confirmed", "{order}");
    }

    // Each process is read once nothing waits in it and its steps are all counted; a count
    // that went past the number of orders shows below.
    let mut after = BTreeMap::new();
    for service in ServiceName::all() {
        let steps: Vec<(ServiceName, &str, &str)> = STEPS_OF_AN_ORDER
            .into_iter()
            .filter(|step| step.0 == service)
            .collect();
        let counted = |reading: &Reading| {
            let before = &before[&service];
            steps
                .iter()
                .all(|(_, name, labels)| moved(before, reading, name, labels) >= PLACED)
        };
        let what = "quiet with every step counted";
        let reading = scrape_until(system.url(service), what, SETTLE, |reading| {
            quiet(reading, service) && counted(reading)
        })
        .await;
        after.insert(service, reading);
    }
    let delta = |service: ServiceName, name: &str, labels: &str| {
        moved(&before[&service], &after[&service], name, labels)
    };
    for (service, name, labels) in STEPS_OF_AN_ORDER {
        assert_eq!(
            delta(service, name, labels),
            PLACED,
            "{service}: {name} {labels}"
        );
    }
    for service in [INVENTORY, ORDERS, PAYMENTS, SHIPPING] {
        for outcome in ["duplicate", "retried", "dead_lettered"] {
            let labels = format!("service={service},outcome={outcome}");
            assert_eq!(delta(service, CONSUMED, &labels), 0, "{service}: {outcome}");
        }
    }
    let everything = "service=inventory";
    assert_eq!(
        delta(INVENTORY, CONSUMED, everything),
        PLACED,
        "order.created only"
    );
    let cancelled = delta(ORDERS, "conveyor_saga_outcomes_total", "outcome=cancelled");
    assert_eq!(cancelled, 0);
    let pool_max = after[&ORDERS].gauge("db_pool_connections", "service=orders,state=max");
    assert_eq!(
        pool_max,
        Some(f64::from(POOL_SIZE)),
        "the pool size it was given"
    );
    every_dashboard_query_names_exposed_metrics(&after[&ORDERS].0);
    system.stop().await;
}

/// A redelivered event, one inventory can never take, and one whose handler fails twice
/// (in the batch's transaction, rolled back, then alone in its savepoint) before its retry
/// succeeds: each delivery is counted once, under its outcome, and no run rolled back is.
#[tokio::test]
async fn a_duplicate_a_poison_event_and_a_transient_failure_are_each_counted_once() {
    let system = Processes::start(&[INVENTORY], &[]).await;
    let sku = system.product(10).await;
    let (clean_id, clean) = order_created(&sku);
    let (failing_id, failing) = order_created(&sku);
    system.fail_reservation(failing_id, Fault::Handler, 2).await;
    let poison = Envelope::new(
        "orders",
        "order.created",
        json!({ "order_id": "not-a-uuid" }),
    );
    let dead_letters = system.env.names.dead_letter_queue("inventory");
    let inventory = system.url(INVENTORY);
    let before = scrape_until(inventory, "quiet", SETTLE, |r| quiet(r, INVENTORY)).await;

    system.env.publish(&clean).await;
    system.wait_for_reservation(clean_id).await;
    // The same event again (a redelivery), the poison and the failing one, maybe one batch.
    publish_all(&system.env, &[clean, poison, failing]).await;
    system.wait_for_reservation(failing_id).await;
    eventually("the poison event is dead-lettered", || async {
        system.env.queue_len(&dead_letters).await >= 1
    })
    .await;
    let counted = |reading: &Reading, outcome: &str| {
        let labels = format!("service=inventory,event_type=order.created,outcome={outcome}");
        moved(&before, reading, CONSUMED, &labels)
    };
    let failures = ["duplicate", "retried", "dead_lettered"];
    let after = scrape_until(
        inventory,
        "quiet with all four outcomes counted",
        SETTLE,
        |r| {
            quiet(r, INVENTORY)
                && counted(r, "handled") >= 2
                && failures.into_iter().all(|outcome| counted(r, outcome) >= 1)
        },
    )
    .await;

    assert_eq!(
        counted(&after, "handled"),
        2,
        "the clean event, and the failing one's retry"
    );
    assert_eq!(counted(&after, "duplicate"), 1);
    assert_eq!(
        counted(&after, "retried"),
        1,
        "once: the rolled-back batch counted nothing"
    );
    assert_eq!(counted(&after, "dead_lettered"), 1);
    assert_eq!(system.env.queue_len(&dead_letters).await, 1);
    assert_eq!(
        system.tries().await,
        3,
        "the failing handler ran three times"
    );
    let runs = moved(
        &before,
        &after,
        HANDLER_RUNS,
        "service=inventory,event_type=order.created",
    );
    assert_eq!(
        runs, 4,
        "every run of a handler is timed, committed or not: 1 + 3"
    );
    let reserved = moved(&before, &after, PUBLISHED, "event_type=inventory.reserved");
    assert_eq!(reserved, 2, "what a rolled-back run emitted is never sent");
    system.stop().await;
}

/// A batch whose commit fails is rolled back whole and handled again: its event is counted
/// once, as handled, for the commit that held, and nothing for the one that failed.
#[tokio::test]
async fn a_batch_whose_commit_fails_is_counted_once_for_the_commit_that_holds() {
    let system = Processes::start(&[INVENTORY], &[]).await;
    let sku = system.product(10).await;
    let (order_id, created) = order_created(&sku);
    system.fail_reservation(order_id, Fault::Commit, 1).await;
    let inventory = system.url(INVENTORY);
    let before = scrape_until(inventory, "quiet", SETTLE, |r| quiet(r, INVENTORY)).await;

    system.env.publish(&created).await;
    system.wait_for_reservation(order_id).await;
    let counted = |reading: &Reading, outcome: &str| {
        let labels = format!("service=inventory,event_type=order.created,outcome={outcome}");
        moved(&before, reading, CONSUMED, &labels)
    };
    // The relay publishes the answer after the commit: wait for it too, or a loaded machine
    // scrapes before the broker's confirm is counted.
    let sent =
        |reading: &Reading| moved(&before, reading, PUBLISHED, "event_type=inventory.reserved");
    let after = scrape_until(
        inventory,
        "quiet with the event counted and answered",
        SETTLE,
        |r| quiet(r, INVENTORY) && counted(r, "handled") >= 1 && sent(r) >= 1,
    )
    .await;

    assert_eq!(
        system.tries().await,
        2,
        "the first commit failed and the second held"
    );
    assert_eq!(counted(&after, "handled"), 1);
    for outcome in ["duplicate", "retried", "dead_lettered"] {
        assert_eq!(counted(&after, outcome), 0, "{outcome}");
    }
    let runs = moved(
        &before,
        &after,
        HANDLER_RUNS,
        "service=inventory,event_type=order.created",
    );
    assert_eq!(runs, 2, "the handler ran in both transactions");
    assert_eq!(sent(&after), 1, "the failed commit's event was never sent");
    system.stop().await;
}

/// While the broker is away, the outbox gauges count exactly the rows waiting and the one
/// parked, with their ages; once the broker is back and the row unparked, all return to 0,
/// and each row is counted as published once.
#[tokio::test]
async fn the_outbox_gauges_count_the_rows_that_wait_and_return_to_zero() {
    let system = Processes::start(&[INVENTORY], &[]).await;
    let inventory = system.url(INVENTORY);
    let (of, created) = ("service=inventory", "event_type=product.created");
    let before = scrape_until(inventory, "quiet", SETTLE, |r| quiet(r, INVENTORY)).await;

    system.cut_off_the_broker();
    for _ in 0..3 {
        system.product(1).await;
    }
    // Parked as the relay parks a row the broker will never take (as outbox.rs does).
    let pool = PgPool::connect(system.database(INVENTORY)).await.unwrap();
    let parked = sqlx::query(
        "UPDATE conveyor.outbox SET parked_at = now(), attempts = 1, last_error = 'parked by a test'
         WHERE id = (SELECT min(id) FROM conveyor.outbox)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(parked.rows_affected(), 1);
    let waiting = scrape_until(inventory, "2 rows waiting and 1 parked", SETTLE, |r| {
        r.gauge(BACKLOG, of) == Some(2.0) && r.gauge(PARKED, of) == Some(1.0)
    })
    .await;
    assert!(
        waiting
            .gauge(OLDEST_UNSENT, of)
            .is_some_and(|age| age > 0.0)
    );
    assert!(
        waiting
            .gauge(OLDEST_PARKED, of)
            .is_some_and(|age| age > 0.0)
    );
    assert_eq!(
        moved(&before, &waiting, PUBLISHED, created),
        0,
        "nothing sent while away"
    );

    system.restore_the_broker();
    let sent = scrape_until(inventory, "the waiting rows sent", SETTLE, |r| {
        r.gauge(BACKLOG, of) == Some(0.0) && moved(&before, r, PUBLISHED, created) >= 2
    })
    .await;
    assert_eq!(sent.gauge(OLDEST_UNSENT, of), Some(0.0));
    assert_eq!(
        sent.gauge(PARKED, of),
        Some(1.0),
        "a parked row stays parked"
    );
    assert_eq!(moved(&before, &sent, PUBLISHED, created), 2);

    conveyor::parked::unpark(&pool, &conveyor::parked::Unpark::All)
        .await
        .unwrap();
    let after = scrape_until(inventory, "quiet, the parked row sent", SETTLE, |r| {
        quiet(r, INVENTORY) && moved(&before, r, PUBLISHED, created) >= 3
    })
    .await;
    assert_eq!(moved(&before, &after, PUBLISHED, created), 3);
    pool.close().await;
    system.stop().await;
}

/// While the broker is away no relay moves due scheduled events: the gauge counts the one
/// due, with how long it has been due; once the broker is back it is sent, once, and the
/// gauge returns to 0.
#[tokio::test]
async fn the_scheduled_gauge_counts_events_due_and_not_sent_and_returns_to_zero() {
    let system = Processes::start(&[INVENTORY], &[]).await;
    let inventory = system.url(INVENTORY);
    let (of, created) = ("service=inventory", "event_type=product.created");
    let before = scrape_until(inventory, "quiet", SETTLE, |r| quiet(r, INVENTORY)).await;

    system.cut_off_the_broker();
    system.product(1).await;
    // The product's event, made a scheduled one that fell due a second ago.
    let pool = PgPool::connect(system.database(INVENTORY)).await.unwrap();
    let scheduled = sqlx::query(
        "WITH event AS (DELETE FROM conveyor.outbox RETURNING event_id, event_type, payload, trace)
         INSERT INTO conveyor.scheduled
             (event_id, event_type, payload, trace, due_at, counts_watched_time_only)
         SELECT event_id, event_type, payload, trace, now() - interval '1 s', false FROM event",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(scheduled.rows_affected(), 1);
    let waiting = scrape_until(inventory, "1 scheduled event due", SETTLE, |r| {
        r.gauge(SCHEDULED_DUE, of) == Some(1.0)
    })
    .await;
    assert!(
        waiting
            .gauge(LONGEST_OVERDUE, of)
            .is_some_and(|overdue| overdue >= 1.0)
    );

    system.restore_the_broker();
    let after = scrape_until(inventory, "the due event sent", SETTLE, |r| {
        r.gauge(SCHEDULED_DUE, of) == Some(0.0) && moved(&before, r, PUBLISHED, created) >= 1
    })
    .await;
    assert_eq!(after.gauge(LONGEST_OVERDUE, of), Some(0.0));
    assert_eq!(moved(&before, &after, PUBLISHED, created), 1);
    pool.close().await;
    system.stop().await;
}

/// With the one worker's batch waiting for a key the test holds, the broker hands the worker
/// its prefetch and keeps the rest ready: the lag gauge counts exactly those, and returns to
/// 0 once the key is free, every event handled exactly once.
#[tokio::test]
async fn the_lag_gauge_counts_the_messages_ready_in_the_queue_and_returns_to_zero() {
    const READY: u16 = 25;
    let one_worker = [("INVENTORY_CONSUMER_WORKERS", "1")];
    let system = Processes::start(&[INVENTORY], &one_worker).await;
    let sku = system.product(1000).await;
    let inventory = system.url(INVENTORY);
    let of = "service=inventory";
    let before = scrape_until(inventory, "quiet", SETTLE, |r| quiet(r, INVENTORY)).await;

    let held = system.hold_key(INVENTORY, &format!("sku:{sku}")).await;
    let total = usize::from(conveyor::ConsumerOptions::default().prefetch + READY);
    let events: Vec<Envelope> = (0..total).map(|_| order_created(&sku).1).collect();
    publish_all(&system.env, &events).await;
    // Well within the consumer's lock timeout (20 s), past which it would stop waiting.
    let what = "the messages past the prefetch ready";
    let held_back = scrape_until(inventory, what, Duration::from_secs(12), |r| {
        r.gauge(LAG, of) == Some(f64::from(READY))
    })
    .await;
    assert_eq!(
        moved(&before, &held_back, CONSUMED, of),
        0,
        "none handled while held"
    );
    held.commit().await.unwrap();

    let total = i64::try_from(total).unwrap();
    let handled = "service=inventory,event_type=order.created,outcome=handled";
    let after = scrape_until(
        inventory,
        "every event handled, the queue empty",
        SETTLE,
        |r| quiet(r, INVENTORY) && moved(&before, r, CONSUMED, handled) >= total,
    )
    .await;
    assert_eq!(moved(&before, &after, CONSUMED, handled), total);
    assert_eq!(
        moved(&before, &after, CONSUMED, of),
        total,
        "waiting for a key is no failure"
    );
    let reserved = moved(&before, &after, PUBLISHED, "event_type=inventory.reserved");
    assert_eq!(reserved, total);
    system.stop().await;
}

/// Users (it signs the tokens the others check) and the services a test needs, each a
/// process of its own on the test's vhost and databases, and an admin's client of them.
struct Processes {
    /// Before `env`: on a failure the processes are killed before their databases go.
    running: Vec<ServiceProcess>,
    env: TestEnv,
    api: Api,
    databases: BTreeMap<ServiceName, String>,
}

impl Processes {
    async fn start(others: &[ServiceName], settings: &[(&str, &str)]) -> Self {
        let env = TestEnv::new().await;
        // Every queue exists before anything is published, as a deployment declares them.
        env.declare(&system::all_topology(&Names::default()).unwrap())
            .await;
        let admin = system::run_admin();
        let mut variables = vec![
            ("AMQP_URL".to_owned(), env.amqp.url()),
            ("CONVEYOR_ADMIN_EMAIL".to_owned(), admin.email.clone()),
            ("CONVEYOR_ADMIN_PASSWORD".to_owned(), admin.password.clone()),
        ];
        let mut databases = BTreeMap::new();
        for service in std::iter::once(USERS).chain(others.iter().copied()) {
            let prefix = service.as_str().to_ascii_uppercase();
            let url = env.create_database(service.as_str()).await;
            variables.push((format!("{prefix}_DATABASE_URL"), url.clone()));
            variables.push((
                format!("{prefix}_DATABASE_POOL_SIZE"),
                POOL_SIZE.to_string(),
            ));
            databases.insert(service, url);
        }
        variables.extend(
            settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        let users = ServiceProcess::spawn(USERS, &variables);
        ready(&users.url).await;
        variables.push(("USERS_URL".to_owned(), users.url.clone()));
        let mut running = vec![users];
        for service in others {
            running.push(ServiceProcess::spawn(*service, &variables));
        }
        let mut urls: BTreeMap<String, String> = ServiceName::all()
            .map(|service| (service.to_string(), NOBODY.to_owned()))
            .collect();
        for process in &running {
            ready(&process.url).await;
            urls.insert(process.service.to_string(), process.url.clone());
        }
        let api = Api::new(&urls)
            .unwrap()
            .signed_in(&admin.email, &admin.password)
            .await
            .unwrap();
        Self {
            running,
            env,
            api,
            databases,
        }
    }

    fn url(&self, service: ServiceName) -> &str {
        self.running
            .iter()
            .find(|process| process.service == service)
            .map_or(NOBODY, |process| process.url.as_str())
    }

    fn database(&self, service: ServiceName) -> &str {
        &self.databases[&service]
    }

    /// A customer in France with room on their credit.
    async fn customer(&self) -> String {
        let name = Uuid::new_v4().simple().to_string();
        let body = json!({
            "email": format!("{name}@example.com"), "name": "Test User",
            "address": { "line1": "1 Test Road", "city": "Testville", "postal_code": "12345", "country": "FR" },
            "credit_limit_cents": 1_000_000,
        });
        let user = self.api.post("users", "/users", &body).await.unwrap();
        user["id"].as_str().unwrap().to_owned()
    }

    async fn product(&self, stock: i64) -> String {
        let sku = format!(
            "SKU-{}",
            &Uuid::new_v4().simple().to_string()[..10].to_ascii_uppercase()
        );
        let body =
            json!({ "sku": sku, "name": "Test product", "price_cents": 900, "stock": stock });
        self.api
            .post("inventory", "/products", &body)
            .await
            .unwrap();
        sku
    }

    /// Waits until orders, payments and shipping keep `user`, and orders `sku`.
    async fn wait_for_copies(&self, user: &str, sku: &str) {
        let mut copies = vec![("orders", format!("/cache/products/{sku}"))];
        for service in ["orders", "payments", "shipping"] {
            copies.push((service, format!("/cache/users/{user}")));
        }
        for (service, path) in &copies {
            eventually(&format!("{service} keeps {path}"), || async {
                let (status, _) = self
                    .api
                    .call(reqwest::Method::GET, service, path, None, &[])
                    .await
                    .unwrap();
                status.is_success()
            })
            .await;
        }
    }

    async fn wait_for_reservation(&self, order_id: Uuid) {
        let path = format!("/reservations/{order_id}");
        eventually(&format!("inventory acts on order {order_id}"), || async {
            let (status, _) = self
                .api
                .call(reqwest::Method::GET, "inventory", &path, None, &[])
                .await
                .unwrap();
            status.is_success()
        })
        .await;
    }

    /// Makes the first `failures` tries to record `order_id`'s reservation in inventory's
    /// database fail where `fault` says, with an error of no special kind (SQLSTATE P0001).
    /// The tries are counted in a sequence, which no rollback takes back ([`Self::tries`]).
    async fn fail_reservation(&self, order_id: Uuid, fault: Fault, failures: u32) {
        let trigger = match fault {
            Fault::Handler => "TRIGGER",
            Fault::Commit => "CONSTRAINT TRIGGER",
        };
        let deferred = match fault {
            Fault::Handler => "",
            Fault::Commit => "DEFERRABLE INITIALLY DEFERRED",
        };
        let sql = format!(
            "CREATE SEQUENCE metrics_test_tries;
             CREATE FUNCTION metrics_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('metrics_test_tries') <= TG_ARGV[0]::int THEN
                     RAISE EXCEPTION 'fault injected by the metrics test';
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE {trigger} metrics_test_fault AFTER INSERT ON reservations {deferred}
                 FOR EACH ROW WHEN (NEW.order_id = '{order_id}')
                 EXECUTE FUNCTION metrics_test_fault('{failures}');"
        );
        let pool = PgPool::connect(self.database(INVENTORY)).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// Tries to record the reservation [`Self::fail_reservation`] fails, rolled back or not.
    async fn tries(&self) -> i64 {
        let pool = PgPool::connect(self.database(INVENTORY)).await.unwrap();
        let tries = sqlx::query_scalar("SELECT last_value FROM metrics_test_tries")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        tries
    }

    /// Takes the lock of `key` in `service`, as its consumer would, until the returned
    /// transaction ends.
    async fn hold_key(
        &self,
        service: ServiceName,
        key: &str,
    ) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let holder = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(self.database(service))
            .await
            .unwrap();
        let mut held = holder.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(conveyor::key_lock_id(service.as_str(), key))
            .execute(&mut *held)
            .await
            .unwrap();
        held
    }

    /// The broker goes away for this test's vhost: nobody may connect, and every open
    /// connection is closed.
    fn cut_off_the_broker(&self) {
        let vhost = self.env.vhost.as_str();
        self.env
            .broker
            .ctl(&["clear_permissions", "-p", vhost, "guest"]);
        self.env.close_all_connections();
    }

    fn restore_the_broker(&self) {
        let vhost = self.env.vhost.as_str();
        self.env
            .broker
            .ctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]);
    }

    /// Stops every process with SIGTERM, users last, each of which must exit cleanly.
    async fn stop(self) {
        let Self { running, env, .. } = self;
        for process in running.into_iter().rev() {
            process.stop().await;
        }
        drop(env);
    }
}

/// Where [`Processes::fail_reservation`] strikes.
#[derive(Clone, Copy)]
enum Fault {
    /// The statement that records the reservation: the handler fails.
    Handler,
    /// The commit of the transaction that recorded it (a deferred check): the batch fails.
    Commit,
}

/// An `order.created` as orders would publish it, of one unit of `sku`, for an order and a
/// customer nobody else knows.
fn order_created(sku: &str) -> (Uuid, Envelope) {
    let order_id = Uuid::new_v4();
    let created = OrderCreatedV1 {
        order_id,
        user_id: Uuid::new_v4(),
        items: vec![PricedItem {
            sku: sku.to_owned(),
            quantity: 1,
            unit_price_cents: 900,
        }],
        total_cents: 900,
        currency: "EUR".to_owned(),
    };
    let envelope = events_schema::envelope("orders", &created)
        .with_subject(order_id.to_string())
        .with_correlation_id(order_id);
    (order_id, envelope)
}

/// Publishes `events` to the events exchange in order on one channel, each confirmed.
async fn publish_all(env: &TestEnv, events: &[Envelope]) {
    let connection = env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = env.names.events_exchange();
    for event in events {
        let properties = BasicProperties::default()
            .with_message_id(event.id.to_string().into())
            .with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                event.event_type.as_str().into(),
                BasicPublishOptions::default(),
                &event.to_bytes(),
                properties,
            )
            .await
            .unwrap();
        assert!(
            confirm.await.unwrap().is_ack(),
            "the broker took {}",
            event.id
        );
    }
    connection.close(200, "done".into()).await.unwrap();
}

async fn ready(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|answer| answer.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "{url}/readyz is not ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `condition` until it holds, failing the test after [`SETTLE`].
async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let held = conveyor_testkit::wait_until(SETTLE, condition).await;
    assert!(held, "timed out waiting until {what}");
}

/// One answer of a process's `GET /metrics`.
pub(crate) struct Reading(String);

impl Reading {
    /// The values of `name`'s samples whose labels include every one `selector` names
    /// (`key=value`, comma-separated; empty for none).
    fn values(&self, name: &str, selector: &str) -> Vec<f64> {
        let wanted: Vec<(&str, &str)> = selector
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').expect("labels as key=value"))
            .collect();
        self.0
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}")))
            .filter(|(metric, labels, _)| {
                *metric == name
                    && wanted
                        .iter()
                        .all(|(key, value)| labels.get(key).map(String::as_str) == Some(*value))
            })
            .map(|(_, _, value)| value)
            .collect()
    }

    /// The sum of `name`'s samples with the labels of `selector`, a whole number (counters,
    /// histogram counts); 0 when there is none, as a counter is before its first increment.
    pub(crate) fn count(&self, name: &str, selector: &str) -> i64 {
        self.values(name, selector).iter().sum::<f64>().round() as i64
    }

    /// The one sample of gauge `name` with the labels of `selector`; `None` until it is
    /// first sampled.
    fn gauge(&self, name: &str, selector: &str) -> Option<f64> {
        let values = self.values(name, selector);
        assert!(
            values.len() <= 1,
            "{name} {selector}: several series in {}",
            self.0
        );
        values.first().copied()
    }
}

/// A sample line's metric name, labels and value, in Prometheus's text format.
fn sample(line: &str) -> Option<(&str, BTreeMap<&str, String>, f64)> {
    let (name, mut rest) = line.split_at(line.find(['{', ' '])?);
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        while let Some((key, after)) = inner.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => value.push(match chars.next()?.1 {
                        'n' => '\n',
                        escaped => escaped,
                    }),
                    (index, '"') => break index + 1,
                    (_, other) => value.push(other),
                }
            };
            labels.insert(key.trim_start_matches(','), value);
            inner = &after[end..];
        }
        rest = inner.strip_prefix('}')?;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// How much counter `name` with the labels of `selector` moved between two readings.
fn moved(before: &Reading, after: &Reading, name: &str, selector: &str) -> i64 {
    after.count(name, selector) - before.count(name, selector)
}

/// Every sampled gauge of `service` says nothing waits: no outbox row unsent or parked and,
/// for a service that consumes, no message ready in its queue. A gauge never sampled is not
/// 0: it fails this.
fn quiet(reading: &Reading, service: ServiceName) -> bool {
    let of = format!("service={service}");
    let mut gauges = vec![BACKLOG, OLDEST_UNSENT, PARKED, OLDEST_PARKED];
    if service != USERS {
        gauges.push(LAG);
    }
    gauges
        .iter()
        .all(|gauge| reading.gauge(gauge, &of) == Some(0.0))
}

pub(crate) async fn scrape(url: &str) -> Reading {
    let url = format!("{url}/metrics");
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Reading(response.text().await.unwrap())
}

/// Reads `url`'s metrics until `done` holds of a reading, and answers it; fails the test
/// with the last reading after `within`.
async fn scrape_until(
    url: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&Reading) -> bool,
) -> Reading {
    let deadline = Instant::now() + within;
    loop {
        let reading = scrape(url).await;
        if done(&reading) {
            return reading;
        }
        assert!(
            Instant::now() < deadline,
            "{url}/metrics: not {what} within {within:?}:\n{}",
            reading.0
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Grafana dashboard of docker-compose.yml asks only for series `/metrics` exposes.
fn every_dashboard_query_names_exposed_metrics(exposed: &str) {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../../observability/grafana/dashboards/conveyor.json"
    ))
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| {
                    ["conveyor_", "http_", "db_pool_"]
                        .iter()
                        .any(|prefix| word.starts_with(prefix))
                });
            for name in names {
                assert!(
                    exposed.contains(&format!("\n{name}{{")),
                    "panel {:?} asks for {name}, which /metrics does not expose",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 13, "the dashboard's queries were read");
}
