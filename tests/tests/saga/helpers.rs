//! Starting the system on a test's own vhost and databases, and talking to it.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use conveyor::{AmqpConfig, Names, Shutdown, ShutdownTrigger};
use conveyor_testkit::TestEnv;
use serde_json::{Value, json};
use system::ServiceName;
use system::scenario::Api;

/// How long a test waits for what the system does on its own. Generous, since CI runs the
/// heaviest tests (a broker cluster losing a node, three processes of each service) beside
/// the others on two cores; what never happens fails all the same.
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(25);

pub(crate) struct System {
    pub(crate) env: TestEnv,
    /// Signed in as the admin.
    pub(crate) api: Api,
    pub(crate) admin: users_service::AdminAccount,
    /// The names of exchanges, queues and broker users.
    pub(crate) names: Names,
    /// How each service connects when it has its own broker user.
    pub(crate) service_amqp: BTreeMap<ServiceName, AmqpConfig>,
    /// How each broker user made for the test connects, by owner (`orders`, `gateway`,
    /// `operator`); empty unless started with [`start_with_own_broker_users`].
    pub(crate) broker_users: BTreeMap<String, AmqpConfig>,
    urls: BTreeMap<String, String>,
    database_urls: BTreeMap<ServiceName, String>,
    config: system::SystemConfig,
    /// Orders' saga deadline: every order ends within it (and a watchdog tick).
    saga_timeout: Duration,
    stop: ShutdownTrigger,
    running: Option<system::Running>,
}

pub(crate) async fn start(services: &[&str], saga_timeout: Duration) -> System {
    start_on(TestEnv::new().await, services, saga_timeout).await
}

/// As [`start`], on a test environment of the caller's (a vhost on a cluster, say).
/// Every service but shipping, and one order placed and paid: its saga stalls after the
/// payment until the deadline. The test holds orders' schedule clock until the payment is
/// captured, so however short the deadline and however loaded the machine, the cancel
/// never overtakes the capture (there would be nothing to refund): orders' relay stops at
/// its next watch, and a hold of more than 3 s counts as unwatched time, which moves the
/// deadline on.
pub(crate) async fn order_without_shipping(saga_timeout: Duration) -> (System, String) {
    let running = ["users", "inventory", "orders", "payments"];
    let system = start(&running, saga_timeout).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(500, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &running).await;
    let held = system
        .hold_lock(
            "orders",
            sqlx::query("SELECT 1 FROM conveyor.schedule_clock WHERE id = 1 FOR UPDATE"),
        )
        .await;
    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order_id = placed["id"].as_str().unwrap().to_owned();
    system
        .eventually("the order is paid", || async {
            system
                .payments(&order_id)
                .await
                .first()
                .is_some_and(|p| p["status"] == "captured")
        })
        .await;
    held.commit().await.unwrap();
    (system, order_id)
}

pub(crate) async fn start_on(env: TestEnv, services: &[&str], saga_timeout: Duration) -> System {
    start_as(
        env,
        services,
        saga_timeout,
        Names::default(),
        BTreeMap::new(),
    )
    .await
}

/// As [`start_on`], with least privilege on the broker: names under a prefix of their own
/// (broker users are per broker, not per vhost) and every service, the gateway's ingest
/// aside, connected as its own user with the permissions `conveyor topology users` gives.
/// The gateway's and the operators' users are made too, for the test to connect as
/// ([`System::broker_users`]).
pub(crate) async fn start_with_own_broker_users(
    services: &[&str],
    saga_timeout: Duration,
) -> System {
    let env = TestEnv::new().await;
    let names = Names::with_prefix(format!(
        "lp{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let mut service_amqp = BTreeMap::new();
    let mut broker_users = BTreeMap::new();
    for user in system::broker_users(&names).unwrap() {
        let amqp = env.add_broker_user(&user);
        if let Ok(service) = ServiceName::parse(&user.owner) {
            service_amqp.insert(service, amqp.clone());
        }
        broker_users.insert(user.owner, amqp);
    }
    let mut system = start_as(env, services, saga_timeout, names, service_amqp).await;
    system.broker_users = broker_users;
    system
}

/// Starts `services` on `env` with `names`; the services in `service_amqp` connect with
/// those settings instead of the test's vhost as guest.
pub(crate) async fn start_as(
    env: TestEnv,
    services: &[&str],
    saga_timeout: Duration,
    names: Names,
    service_amqp: BTreeMap<ServiceName, AmqpConfig>,
) -> System {
    start_tuned(env, services, saga_timeout, names, service_amqp, |_| {}).await
}

/// As [`start`], with the services' own settings as `tune` leaves them.
pub(crate) async fn start_with_settings(
    services: &[&str],
    tune: impl FnOnce(&mut platform::OwnSettings),
) -> System {
    let env = TestEnv::new().await;
    let names = Names::default();
    let timeout = Duration::from_secs(60);
    start_tuned(env, services, timeout, names, BTreeMap::new(), tune).await
}

async fn start_tuned(
    env: TestEnv,
    services: &[&str],
    saga_timeout: Duration,
    names: Names,
    service_amqp: BTreeMap<ServiceName, AmqpConfig>,
    tune: impl FnOnce(&mut platform::OwnSettings),
) -> System {
    let admin = system::run_admin();
    let mut database_urls = BTreeMap::new();
    for service in ServiceName::all() {
        database_urls.insert(service, env.create_database(service.as_str()).await);
    }
    let mut config = system::SystemConfig {
        amqp: AmqpConfig::new(env.amqp.url(), "system test"),
        service_amqp: service_amqp.clone(),
        database_urls: database_urls.clone(),
        ports: BTreeMap::new(),
        pool_size: 8,
        http_concurrency: None,
        // More than the default, so that every saga test runs competing workers.
        consumer_workers: ServiceName::all().map(|service| (service, 3)).collect(),
        listen_addr: [127, 0, 0, 1].into(),
        names: names.clone(),
        own_settings: own_settings(saga_timeout, &admin),
        users_url: String::new(),
        shutdown_timeout: platform::config::DEFAULT_SHUTDOWN_TIMEOUT,
    };
    tune(&mut config.own_settings);
    let (stop, running, urls, api) = run_services(&config, services, &admin).await;
    System {
        api,
        admin,
        names,
        service_amqp,
        broker_users: BTreeMap::new(),
        urls,
        database_urls,
        env,
        config,
        saga_timeout,
        stop,
        running: Some(running),
    }
}

/// The reference services' own settings for a test: the saga deadline, the run's admin, and
/// the defaults (never the environment's) for the rest.
fn own_settings(
    saga_timeout: Duration,
    admin: &users_service::AdminAccount,
) -> platform::OwnSettings {
    let mut settings = platform::OwnSettings::default();
    settings.insert(orders_service::Settings {
        saga_timeout,
        ..orders_service::Settings::default()
    });
    settings.insert(shipping_service::Settings::default());
    settings.insert(users_service::Settings {
        admin: Some(admin.clone()),
        ..users_service::Settings::default()
    });
    settings
}

/// Starts `services` (and users, always: it issues the tokens every other service checks)
/// and signs the admin in.
async fn run_services(
    config: &system::SystemConfig,
    services: &[&str],
    admin: &users_service::AdminAccount,
) -> (
    ShutdownTrigger,
    system::Running,
    BTreeMap<String, String>,
    Api,
) {
    let (stop, shutdown) = Shutdown::new();
    let chosen: Vec<ServiceName> = services
        .iter()
        .chain(&["users"])
        .map(|service| ServiceName::parse(service).unwrap())
        .collect();
    let running = system::start(config, &chosen, shutdown).await.unwrap();
    let mut urls = running.first_urls();
    // Services not started still need a URL for the client; nothing answers there.
    for service in ServiceName::all() {
        urls.entry(service.to_string())
            .or_insert_with(|| "http://127.0.0.1:9".to_owned());
    }
    let api = Api::new(&urls)
        .unwrap()
        .signed_in(&admin.email, &admin.password)
        .await
        .unwrap();
    (stop, running, urls, api)
}

impl System {
    pub(crate) fn database_url(&self, service: &str) -> String {
        self.database_urls[&ServiceName::parse(service).unwrap()].clone()
    }

    pub(crate) fn urls(&self) -> BTreeMap<String, String> {
        self.urls.clone()
    }

    pub(crate) async fn stop(mut self) {
        self.stop_services().await;
    }

    /// Stops every service and starts `services` again on the same broker and databases,
    /// with the settings `change` makes.
    pub(crate) async fn restart(
        &mut self,
        services: &[&str],
        change: impl FnOnce(&mut system::SystemConfig),
    ) {
        self.stop_services().await;
        change(&mut self.config);
        let (stop, running, urls, api) = run_services(&self.config, services, &self.admin).await;
        self.stop = stop;
        self.running = Some(running);
        self.urls = urls;
        self.api = api;
    }

    /// Stops every service as SIGTERM would; the test's broker and databases stay.
    pub(crate) async fn stop_services(&mut self) {
        self.stop.fire();
        // Each instance gives up what it waits for after its shutdown budget; the margin is
        // for a busy machine.
        let within = self.config.shutdown_timeout + Duration::from_secs(10);
        if let Some(mut running) = self.running.take() {
            match tokio::time::timeout(within, running.wait()).await {
                Ok(stopped) => stopped.unwrap(),
                Err(_) => panic!(
                    "services still running {within:?} after the shutdown: {}",
                    running.still_running().join(", ")
                ),
            }
        }
    }

    /// The broker goes away for this test's vhost: nobody may connect, and every open
    /// connection is closed.
    pub(crate) fn cut_off_the_broker(&self) {
        self.env
            .broker
            .ctl(&["clear_permissions", "-p", &self.env.vhost, "guest"]);
        self.env.close_all_connections();
    }

    /// The broker lets this test's services in again.
    pub(crate) fn restore_the_broker(&self) {
        self.env.broker.ctl(&[
            "set_permissions",
            "-p",
            &self.env.vhost,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
    }

    /// Events each of `services` committed to its outbox and has not sent.
    pub(crate) async fn unsent(&self, services: &[&str]) -> BTreeMap<String, i64> {
        let mut unsent = BTreeMap::new();
        for service in services {
            let url = &self.database_urls[&ServiceName::parse(service).unwrap()];
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM conveyor.outbox")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            unsent.insert((*service).to_owned(), count);
        }
        unsent
    }

    /// Outbox rows parked across every service.
    pub(crate) async fn parked(&self) -> i64 {
        let mut parked = 0;
        for url in self.database_urls.values() {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            parked += conveyor::parked::summary(&pool).await.unwrap().count;
            pool.close().await;
        }
        parked
    }

    pub(crate) async fn user(&self, country: &str, credit_limit_cents: i64) -> String {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let body = json!({
            "email": format!("{name}@example.com"), "name": "Test User",
            "address": { "line1": "1 Test Road", "city": "Testville", "postal_code": "12345", "country": country },
            "credit_limit_cents": credit_limit_cents,
        });
        let user = self.api.post("users", "/users", &body).await.unwrap();
        user["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn product(&self, price_cents: i64, stock: i64) -> String {
        let sku = format!(
            "SKU-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10].to_ascii_uppercase()
        );
        let body = json!({ "sku": sku, "name": "Test product", "price_cents": price_cents, "stock": stock });
        self.api
            .post("inventory", "/products", &body)
            .await
            .unwrap();
        sku
    }

    /// A customer in France with room on their credit, and a product of `price_cents` with
    /// `stock`, both known to every service's copies (every service must run).
    pub(crate) async fn customer_and_product(
        &self,
        price_cents: i64,
        stock: i64,
    ) -> (String, String) {
        let user = self.user("FR", 1_000_000).await;
        let sku = self.product(price_cents, stock).await;
        self.wait_for_caches(&[&user], &[&sku], &ALL).await;
        (user, sku)
    }

    /// Waits until the running services' copies know `users` and `products`.
    pub(crate) async fn wait_for_caches(
        &self,
        users: &[&str],
        products: &[&str],
        services: &[&str],
    ) {
        let mut paths = Vec::new();
        for user in users {
            for service in services.iter().filter(|s| USERS_COPIED_BY.contains(s)) {
                paths.push((*service, format!("/cache/users/{user}")));
            }
        }
        for sku in products {
            paths.push(("orders", format!("/cache/products/{sku}")));
        }
        for (service, path) in paths {
            self.eventually(&format!("{service} caches {path}"), || async {
                let (status, _) = self
                    .api
                    .call(reqwest::Method::GET, service, &path, None, &[])
                    .await
                    .unwrap();
                status.is_success()
            })
            .await;
        }
    }

    /// Deactivates `user` through the users API; returns the user as it now is.
    pub(crate) async fn deactivate(&self, user: &str) -> Value {
        self.api
            .post("users", &format!("/users/{user}/deactivate"), &json!({}))
            .await
            .unwrap()
    }

    pub(crate) async fn place(&self, user: &str, items: Value) -> Value {
        self.api
            .post(
                "orders",
                "/orders",
                &json!({ "user_id": user, "items": items }),
            )
            .await
            .unwrap()
    }

    /// `count` orders of one `sku` each for `user`, placed at once.
    pub(crate) async fn place_at_once(&self, user: &str, sku: &str, count: usize) -> Vec<Value> {
        futures_util::future::join_all(
            (0..count).map(|_| self.place(user, json!([{ "sku": sku, "quantity": 1 }]))),
        )
        .await
    }

    /// Every order of `user`.
    pub(crate) async fn orders_of(&self, user: &str) -> Vec<Value> {
        self.api.orders(&format!("user_id={user}")).await.unwrap()
    }

    /// Waits until the order's payment is refunded.
    pub(crate) async fn wait_until_refunded(&self, order_id: &str) {
        self.eventually(
            &format!("order {order_id}'s payment is refunded"),
            || async {
                self.payments(order_id)
                    .await
                    .first()
                    .is_some_and(|p| p["status"] == "refunded")
            },
        )
        .await;
    }

    /// Waits until the order is no longer pending, and returns it. The deadline guarantees
    /// an end, so the wait outlasts it: an order that took a retry tier and ended by its
    /// deadline shows as such, not as a timed-out test.
    pub(crate) async fn final_order(&self, order_id: &str) -> Value {
        let path = format!("/orders/{order_id}");
        let within = EVENTUALLY.max(self.saga_timeout + Duration::from_secs(30));
        let ended = conveyor_testkit::wait_until_every(within, POLL, || async {
            let order = self.api.get("orders", &path).await.unwrap();
            order["status"] != "pending"
        })
        .await;
        assert!(ended, "order {order_id} is still pending after {within:?}");
        self.api.get("orders", &path).await.unwrap()
    }

    pub(crate) async fn payments(&self, order_id: &str) -> Vec<Value> {
        let answer = self
            .api
            .get("payments", &format!("/payments?order_id={order_id}"))
            .await
            .unwrap();
        answer["payments"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) async fn shipments(&self, order_id: &str) -> Vec<Value> {
        let answer = self
            .api
            .get("shipping", &format!("/shipments?order_id={order_id}"))
            .await
            .unwrap();
        answer["shipments"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) async fn reservation(&self, order_id: &str) -> Option<String> {
        let (status, answer) = self
            .api
            .call(
                reqwest::Method::GET,
                "inventory",
                &format!("/reservations/{order_id}"),
                None,
                &[],
            )
            .await
            .unwrap();
        status
            .is_success()
            .then(|| answer["status"].as_str().unwrap().to_owned())
    }

    pub(crate) async fn reserved(&self, sku: &str) -> i64 {
        let product = self
            .api
            .get("inventory", &format!("/products/{sku}"))
            .await
            .unwrap();
        product["reserved"].as_i64().unwrap()
    }

    /// Polls `condition` until it holds, failing the test after [`EVENTUALLY`].
    pub(crate) async fn eventually<F, Fut>(&self, what: &str, condition: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let held = conveyor_testkit::wait_until_every(EVENTUALLY, POLL, condition).await;
        assert!(held, "timed out waiting until {what}");
    }

    /// Takes a lock in `service`'s database with `lock` (a row locked `FOR UPDATE`, an
    /// advisory lock) and holds it until the returned transaction ends.
    pub(crate) async fn hold_lock(
        &self,
        service: &str,
        lock: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let holder = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.database_url(service))
            .await
            .unwrap();
        let mut held = holder.begin().await.unwrap();
        lock.execute(&mut *held).await.unwrap();
        held
    }

    /// `service`'s cached copy of `user`; `None` while it has none.
    pub(crate) async fn cached_user(&self, service: &str, user: &str) -> Option<Value> {
        let (status, body) = self
            .api
            .call(
                reqwest::Method::GET,
                service,
                &format!("/cache/users/{user}"),
                None,
                &[],
            )
            .await
            .unwrap();
        status.is_success().then_some(body)
    }

    /// Publishes an event straight to `conveyor.events`, as a misbehaving broker or producer
    /// might deliver it: late, early or twice.
    pub(crate) async fn publish(&self, envelope: &conveyor::Envelope) {
        self.env.publish(envelope).await;
    }
}

pub(crate) static ALL: LazyLock<Vec<&str>> =
    LazyLock::new(|| ServiceName::all().map(ServiceName::as_str).collect());

/// The services that keep a cached copy of users.
pub(crate) static USERS_COPIED_BY: LazyLock<Vec<&str>> = LazyLock::new(|| {
    ServiceName::USERS
        .copied_by()
        .map(ServiceName::as_str)
        .collect()
});
