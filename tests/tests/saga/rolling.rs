//! A rolling upgrade under traffic, as users upgrade: every service runs as the previous
//! release's binary (built by `scripts/previous-release`), then, one service at a time in the
//! saga's order, this build's binary starts beside the old one on the same database and
//! queue, and later the old one is stopped with SIGTERM — while customers keep placing and
//! cancelling orders. The books must still balance, and both releases must have done work.
//!
//! The new processes all start before any old one stops, so at one moment every service
//! runs both releases: each hop of the saga then carries events from old and new senders to
//! old and new receivers, whatever order an operator rolls the services in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use conveyor::Names;
use conveyor_testkit::TestEnv;
use serde_json::json;
use system::AdminAccount;
use system::ServiceName;

const USERS: ServiceName = ServiceName::USERS;
const INVENTORY: ServiceName = ServiceName::INVENTORY;
const ORDERS: ServiceName = ServiceName::ORDERS;
const PAYMENTS: ServiceName = ServiceName::PAYMENTS;
const SHIPPING: ServiceName = ServiceName::SHIPPING;
use system::scenario::{self, Api, Fixtures, LoadOptions, Placed, Strays};
use tokio::sync::watch;

use crate::processes::ServiceProcess;

/// The directory of the previous release's service binaries.
const PREVIOUS: &str = "CONVEYOR_PREVIOUS_BINARIES";
const HOW_TO_RUN: &str = "CONVEYOR_PREVIOUS_BINARIES=$(scripts/previous-release) cargo test -p system-tests --test saga rolling -- --ignored";
/// Users first (every cached copy and every token comes from it), then the saga's steps in
/// the order an order travels them.
const ROLL_ORDER: [ServiceName; 5] = [USERS, ORDERS, INVENTORY, PAYMENTS, SHIPPING];
/// Traffic on the fleet as it is before each step: long enough for several batches.
const PAUSE: Duration = Duration::from_secs(3);
/// Orders per batch: 20 reach every path of the saga (`scenario::place` cycles through them).
const BATCH: usize = 20;
/// Orders offered per second: modest, for ten processes on a small machine.
const RATE: f64 = 10.0;
/// Batches placed once the roll is over, on this release alone.
const BATCHES_AFTER_ROLL: usize = 2;
/// The batch counter once traffic has ended, well or not.
const TRAFFIC_OVER: u64 = u64::MAX;
const CONSUMED: &str = "conveyor_events_consumed_total";
const HTTP: &str = "http_requests_total";

/// A counter of a process's `GET /metrics`: its name and the labels of the samples summed
/// (`key=value,…`, as `metrics::Reading::count` reads them).
type Counter = (&'static str, &'static str);

/// What shows a process of `service` did the traffic's work: counters that must move in the
/// old process while the new one runs beside it, and in the new one before the old stops.
fn work(service: ServiceName) -> &'static [Counter] {
    const HANDLED: Counter = (CONSUMED, "outcome=handled");
    match service {
        USERS => &[(HTTP, "route=/users,method=POST,status=201")],
        ORDERS => &[(HTTP, "route=/orders,method=POST,status=201"), HANDLED],
        // The saga's other steps: inventory, payments, shipping.
        _ => &[HANDLED],
    }
}

/// A step of the roll.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Start this build's process of the service beside the previous release's.
    Start(ServiceName),
    /// Stop the previous release's process of the service, with SIGTERM.
    Stop(ServiceName),
}

/// Every new process first, then every old one stopped: each service runs both releases
/// from its `Start` to its `Stop`, and all five do between the last `Start` and the first
/// `Stop`. (Strictly one service after another is `Start(s), Stop(s)` for each in turn.)
fn schedule() -> impl Iterator<Item = Step> {
    let starts = ROLL_ORDER.into_iter().map(Step::Start);
    starts.chain(ROLL_ORDER.into_iter().map(Step::Stop))
}

#[tokio::test]
#[ignore = "needs the previous release's binaries: CONVEYOR_PREVIOUS_BINARIES=$(scripts/previous-release) cargo test -p system-tests --test saga rolling -- --ignored"]
async fn a_rolling_upgrade_from_the_previous_release_under_traffic_keeps_the_books() {
    let previous = previous_binaries();
    let env = TestEnv::new().await;
    let admin = system::run_admin();
    let (mut variables, databases) = environment(&env, &admin).await;
    // Every queue exists before anything is published, as the operator's `topology apply`
    // of the release being rolled out makes them before the roll (the old processes'
    // own declarations then find them in place).
    env.declare(&system::all_topology(&Names::default()).unwrap())
        .await;
    let mut pairs = start_previous_release(&previous, &mut variables).await;
    let fleet = Fleet::of(&pairs);
    let everyone = signed_in(&fleet, &admin).await;
    let fixtures = scenario::prepare(&everyone).await.unwrap();
    let admin_token = everyone.bearer_token().unwrap().to_owned();

    let (placed, (overlaps, most_mixed)) = tokio::join!(
        traffic(&fleet, &fixtures, &admin_token),
        roll(&fleet, &mut pairs, &mut variables),
    );
    let placed = placed.unwrap();
    let survivors = signed_in(&fleet, &admin).await;
    let settled = scenario::settle(
        &survivors,
        &env.amqp,
        &fixtures,
        &placed,
        Duration::from_secs(180),
        Strays::default(),
    )
    .await;
    let outboxes = outboxes(&databases).await;
    let deadlines = deadlines(&databases[&ORDERS]).await;
    for pair in pairs.into_values() {
        if let Some(new) = pair.new {
            new.stop().await;
        }
    }

    let report = settled.unwrap();
    eprintln!(
        "rolling: {} orders, {} confirmed, {:?} cancelled, returns {:?}; work while both ran: {overlaps:?}",
        report.placed, report.confirmed, report.cancelled, report.returns
    );
    assert_eq!(
        most_mixed,
        ROLL_ORDER.len(),
        "not every service ran both releases at once"
    );
    assert_eq!(overlaps.len(), ROLL_ORDER.len(), "the roll did not finish");
    for overlap in &overlaps {
        let counters = work(overlap.service);
        assert!(
            overlap.both_worked(),
            "one side was idle: {overlap:?} of {counters:?}"
        );
    }
    // About a batch every two seconds through a roll of a minute or more.
    assert!(report.placed >= 10 * BATCH, "{report:?}");
    for invariant in &report.invariants {
        assert!(invariant.ok, "{}: {}", invariant.name, invariant.detail);
    }
    assert!(report.confirmed > 0, "{report:?}");
    let closed = report.returns.get("closed").copied().unwrap_or_default();
    assert!(closed > 0, "no return closed during the roll: {report:?}");
    for (service, unsent, parked) in outboxes {
        assert_eq!(
            (unsent, parked),
            (0, 0),
            "{service}'s outbox: rows (unsent, parked)"
        );
    }
    // This release scheduled the deadlines of the orders it placed or adopted, and no relay
    // of either release sent one before its order's deadline. (One may be sent later, once
    // due: the previous release ends orders without taking their deadline back, and the
    // handler ignores a deadline of an ended order.)
    let (scheduled, early) = deadlines;
    assert!(scheduled > 0, "no order's deadline was scheduled");
    assert_eq!(early, 0, "deadlines sent before they were due: {report:?}");
}

/// In orders' database: the orders whose deadline was scheduled, and the deadlines that went
/// to the outbox before their order's `deadline_at` (created then plus the saga timeout).
async fn deadlines(orders: &str) -> (i64, i64) {
    let pool = sqlx::PgPool::connect(orders).await.unwrap();
    let counts = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders WHERE deadline_scheduled),
                (SELECT count(*) FROM conveyor.published AS sent JOIN orders ON sent.subject = orders.id::text
                 WHERE sent.event_type = 'order.deadline-passed' AND sent.created_at < orders.deadline_at)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    counts
}

/// `CONVEYOR_PREVIOUS_BINARIES`, checked: run without it, the test fails rather than pass
/// having compared nothing.
fn previous_binaries() -> PathBuf {
    let directory = std::env::var_os(PREVIOUS)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{PREVIOUS} is not set or empty: this test runs the previous release's service \
                 binaries beside this build's, so it needs the directory scripts/previous-release \
                 makes: {HOW_TO_RUN} (when scripts/previous-release exits 3 there is no previous \
                 commit: skip this test)"
            )
        });
    // Tests run in their package's directory, not the caller's.
    assert!(
        directory.is_absolute(),
        "{PREVIOUS}={} must be an absolute path",
        directory.display()
    );
    for service in ServiceName::all() {
        let binary = directory.join(format!("{service}-service"));
        assert!(
            binary.is_file(),
            "{} is missing: {HOW_TO_RUN}",
            binary.display()
        );
    }
    directory
}

/// Every service's environment: the test's vhost, one database per service (returned too,
/// by service), small pools (up to ten processes share Postgres's connections), and the
/// admin account users makes at its start.
async fn environment(
    env: &TestEnv,
    admin: &AdminAccount,
) -> (Vec<(String, String)>, BTreeMap<ServiceName, String>) {
    let mut variables = vec![
        ("AMQP_URL".to_owned(), env.amqp.url()),
        ("CONVEYOR_ADMIN_EMAIL".to_owned(), admin.email.clone()),
        ("CONVEYOR_ADMIN_PASSWORD".to_owned(), admin.password.clone()),
    ];
    let mut databases = BTreeMap::new();
    for service in ServiceName::all() {
        let prefix = service.as_str().to_ascii_uppercase();
        let url = env.create_database(service.as_str()).await;
        variables.push((format!("{prefix}_DATABASE_URL"), url.clone()));
        variables.push((format!("{prefix}_DATABASE_POOL_SIZE"), "4".to_owned()));
        // Competing workers inside each process as well as between processes.
        variables.push((format!("{prefix}_CONSUMER_WORKERS"), "2".to_owned()));
        databases.insert(service, url);
    }
    (variables, databases)
}

/// Where processes started from now on fetch the keys that sign tokens.
fn set_users_url(variables: &mut Vec<(String, String)>, url: &str) {
    variables.retain(|(name, _)| name != "USERS_URL");
    variables.push(("USERS_URL".to_owned(), url.to_owned()));
}

/// A service's process of the previous release, this build's that replaces it, and the old
/// one's work counters when the new one joined.
struct Pair {
    old: Option<ServiceProcess>,
    new: Option<ServiceProcess>,
    old_when_joined: Vec<u64>,
}

/// One process of every service, from the previous release's binaries, each ready.
async fn start_previous_release(
    previous: &Path,
    variables: &mut Vec<(String, String)>,
) -> BTreeMap<ServiceName, Pair> {
    let mut pairs = BTreeMap::new();
    // Users first: the others check tokens against the keys it publishes.
    for service in ServiceName::all() {
        let process = spawn(Some(previous), service, variables).await;
        wait_until_ready(&process).await;
        if service == USERS {
            set_users_url(variables, &process.url);
        }
        let pair = Pair {
            old: Some(process),
            new: None,
            old_when_joined: Vec::new(),
        };
        pairs.insert(service, pair);
    }
    pairs
}

/// Starts a process of `service`: the binary in `previous`, or this build's when `None`. On
/// a blocking thread: a start waits (blocking) for the process's first log lines, and the
/// traffic, on this test's one runtime thread, must go on meanwhile.
async fn spawn(
    previous: Option<&Path>,
    service: ServiceName,
    variables: &[(String, String)],
) -> ServiceProcess {
    let previous = previous.map(Path::to_path_buf);
    let variables = variables.to_vec();
    let started = tokio::task::spawn_blocking(move || match previous {
        Some(directory) => ServiceProcess::spawn_from(&directory, service, &variables),
        None => ServiceProcess::spawn(service, &variables),
    })
    .await;
    started.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

async fn wait_until_ready(process: &ServiceProcess) {
    let client = reqwest::Client::new();
    let url = format!("{}/readyz", process.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(&url)
        .send()
        .await
        .is_ok_and(|answer| answer.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "{url} ({}) is not ready after 60 s: {:?}",
            process.service,
            process.log_lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The processes clients may call, shared by the roll and the traffic. Traffic comes in
/// batches, each calling only the processes listed when it began; a process withdrawn from
/// the list is stopped only once the batch that may still call it has ended, so no request
/// of the test meets a process going away (a deployment's load balancer drains it likewise).
struct Fleet {
    urls: Mutex<BTreeMap<String, Vec<String>>>,
    /// How many batches have taken their copy of `urls`; [`TRAFFIC_OVER`] once none will.
    batches: watch::Sender<u64>,
    /// Set when the roll is over: the traffic then places its last batches and ends.
    rolled: AtomicBool,
}

impl Fleet {
    fn of(pairs: &BTreeMap<ServiceName, Pair>) -> Self {
        let mut urls: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (service, pair) in pairs {
            let processes = pair.old.iter().chain(&pair.new);
            let service_urls = urls.entry(service.as_str().to_owned()).or_default();
            service_urls.extend(processes.map(|process| process.url.clone()));
        }
        Self {
            urls: Mutex::new(urls),
            batches: watch::channel(0).0,
            rolled: AtomicBool::new(false),
        }
    }

    /// The URLs now, for a caller outside the traffic.
    fn urls(&self) -> BTreeMap<String, Vec<String>> {
        self.urls.lock().unwrap().clone()
    }

    /// The URLs now, for the next batch of traffic, counted.
    fn urls_for_batch(&self) -> BTreeMap<String, Vec<String>> {
        let urls = self.urls.lock().unwrap();
        self.batches
            .send_modify(|count| *count = count.saturating_add(1));
        urls.clone()
    }

    fn add(&self, service: ServiceName, url: &str) {
        let mut urls = self.urls.lock().unwrap();
        let service_urls = urls.entry(service.as_str().to_owned()).or_default();
        service_urls.push(url.to_owned());
    }

    /// Takes `url` out of the list, and waits until no batch can still call it: the last
    /// batch given it has ended (the next one began), or the traffic has.
    async fn withdraw(&self, service: ServiceName, url: &str) {
        let last_given = {
            let mut urls = self.urls.lock().unwrap();
            if let Some(service_urls) = urls.get_mut(service.as_str()) {
                service_urls.retain(|listed| listed != url);
            }
            *self.batches.borrow()
        };
        let mut batches = self.batches.subscribe();
        // An error would mean the channel closed, which it cannot while `self` lives.
        let _ = batches.wait_for(|count| *count > last_given).await.is_ok();
    }

    fn traffic_over(&self) -> bool {
        *self.batches.borrow() == TRAFFIC_OVER
    }
}

/// An API client of the fleet as it is, signed in as the admin.
async fn signed_in(fleet: &Fleet, admin: &AdminAccount) -> Api {
    Api::with_replicas(fleet.urls())
        .unwrap()
        .signed_in(&admin.email, &admin.password)
        .await
        .unwrap()
}

/// Orders placed by their customers at a modest rate, some cancelled at once, batch after
/// batch from before the roll's first step until a few batches after its last.
async fn traffic(
    fleet: &Fleet,
    fixtures: &Fixtures,
    admin_token: &str,
) -> anyhow::Result<Vec<Placed>> {
    let placed = batches(fleet, fixtures, admin_token).await;
    // Ended, well or not: the roll must not wait for another batch.
    fleet.batches.send_modify(|count| *count = TRAFFIC_OVER);
    placed
}

async fn batches(
    fleet: &Fleet,
    fixtures: &Fixtures,
    admin_token: &str,
) -> anyhow::Result<Vec<Placed>> {
    let options = LoadOptions {
        orders: BATCH,
        concurrency: 8,
        rate: Some(RATE),
        // Three in twenty, cancelled within 200 ms: racing every step of the saga.
        cancel_every: 5,
        cancel_within: Duration::from_millis(200),
        // Returns too: the previous release has them (since returns came, 9595290), so
        // either release's instances may take a return's request and its events.
        return_every: 10,
    };
    let client = reqwest::Client::new();
    let mut placed = Vec::new();
    let mut after_roll = 0;
    let mut batch = 0;
    while after_roll < BATCHES_AFTER_ROLL {
        if fleet.rolled.load(Ordering::SeqCst) {
            after_roll += 1;
        }
        batch += 1;
        let urls = fleet.urls_for_batch();
        let api = Api::with_replicas(urls.clone())?;
        let orders = scenario::place(&api, fixtures, &options, |_| {}).await;
        placed.extend(orders.with_context(|| format!("batch {batch} of orders"))?);
        // Users serves traffic too: each of its processes registers a customer, whose event
        // every cached copy (orders, payments, shipping) takes in.
        for users in urls.get("users").into_iter().flatten() {
            register(&client, users, admin_token)
                .await
                .with_context(|| format!("batch {batch}"))?;
        }
    }
    Ok(placed)
}

/// A customer registered by the admin at the users process at `users`.
async fn register(client: &reqwest::Client, users: &str, admin_token: &str) -> anyhow::Result<()> {
    let name = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({
        "email": format!("rolling-{name}@example.com"), "name": "Rolling Customer",
        "address": { "line1": "1 Upgrade Lane", "city": "Demo City", "postal_code": "10001", "country": "FR" },
        "credit_limit_cents": 100_000, "currency": "EUR",
    });
    let url = format!("{users}/users");
    let answer = client
        .post(&url)
        .bearer_auth(admin_token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url} failed"))?;
    let status = answer.status();
    if status != reqwest::StatusCode::CREATED {
        let text = answer.text().await.unwrap_or_default();
        anyhow::bail!("POST {url} answered {status}: {text}");
    }
    Ok(())
}

/// What each side of a service did while both ran, one entry per counter of [`work`]: how
/// far the old process's moved after the new one joined, and the new one's when the old
/// one was stopped.
#[derive(Debug)]
struct Overlap {
    service: ServiceName,
    old_moved: Vec<u64>,
    new_did: Vec<u64>,
}

impl Overlap {
    fn both_worked(&self) -> bool {
        let mut counts = self.old_moved.iter().chain(&self.new_did);
        self.old_moved.len() == self.new_did.len() && counts.all(|count| *count > 0)
    }
}

/// Runs [`schedule`], a pause of traffic before each step; answers what both sides of each
/// service did while both ran, and the most services that ran both releases at once.
async fn roll(
    fleet: &Fleet,
    pairs: &mut BTreeMap<ServiceName, Pair>,
    variables: &mut Vec<(String, String)>,
) -> (Vec<Overlap>, usize) {
    let mut overlaps = Vec::new();
    let mut most_mixed = 0;
    for step in schedule() {
        tokio::time::sleep(PAUSE).await;
        // A failed traffic fails the test; rolling on would only delay saying so.
        if fleet.traffic_over() {
            break;
        }
        match step {
            Step::Start(service) => start_new(fleet, pairs, service, variables).await,
            Step::Stop(service) => overlaps.push(stop_old(fleet, pairs, service).await),
        }
        let mixed = pairs
            .values()
            .filter(|pair| pair.old.is_some() && pair.new.is_some())
            .count();
        most_mixed = most_mixed.max(mixed);
    }
    fleet.rolled.store(true, Ordering::SeqCst);
    (overlaps, most_mixed)
}

/// This build's process of `service`, started beside the previous release's, ready, and
/// given to clients.
async fn start_new(
    fleet: &Fleet,
    pairs: &mut BTreeMap<ServiceName, Pair>,
    service: ServiceName,
    variables: &mut Vec<(String, String)>,
) {
    let process = spawn(None, service, variables).await;
    wait_until_ready(&process).await;
    if service == USERS {
        // The old processes keep the keys they fetched from the old users (the same keys:
        // they are kept in users' database) once it stops.
        set_users_url(variables, &process.url);
    }
    let pair = pairs.get_mut(&service).expect("every service runs");
    let old = pair
        .old
        .as_ref()
        .expect("the new process starts beside the old one");
    pair.old_when_joined = work_done(service, &old.url).await;
    fleet.add(service, &process.url);
    pair.new = Some(process);
}

/// The previous release's process of `service`, withdrawn from clients and stopped with
/// SIGTERM; what both sides did while both ran.
async fn stop_old(
    fleet: &Fleet,
    pairs: &mut BTreeMap<ServiceName, Pair>,
    service: ServiceName,
) -> Overlap {
    let pair = pairs.get_mut(&service).expect("every service runs");
    let old = pair.old.take().expect("the old process is stopped once");
    let new = pair
        .new
        .as_ref()
        .expect("the new process runs before the old one stops");
    fleet.withdraw(service, &old.url).await;
    let old_now = work_done(service, &old.url).await;
    let new_did = work_done(service, &new.url).await;
    old.stop().await;
    let old_moved = old_now
        .iter()
        .zip(&pair.old_when_joined)
        .map(|(now, then)| now.saturating_sub(*then))
        .collect();
    Overlap {
        service,
        old_moved,
        new_did,
    }
}

/// The counters of [`work`] as the process at `url` reports them now.
async fn work_done(service: ServiceName, url: &str) -> Vec<u64> {
    let reading = crate::metrics::scrape(url).await;
    work(service)
        .iter()
        .map(|(name, selector)| u64::try_from(reading.count(name, selector)).unwrap_or(0))
        .collect()
}

/// Each service's outbox rows not sent and rows parked, once none is left to send (or after
/// 30 s).
async fn outboxes(databases: &BTreeMap<ServiceName, String>) -> Vec<(ServiceName, i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut counts = Vec::new();
        for (service, url) in databases {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let (unsent, parked): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE parked_at IS NULL),
                        count(*) FILTER (WHERE parked_at IS NOT NULL)
                 FROM conveyor.outbox WHERE published_at IS NULL",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            counts.push((*service, unsent, parked));
        }
        if counts.iter().all(|(_, unsent, _)| *unsent == 0) || Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_roll_starts_every_service_once() {
    assert_eq!(
        schedule()
            .filter(|step| matches!(step, Step::Start(_)))
            .count(),
        ROLL_ORDER.len()
    );
}

/// A statement prepared with `*` fails on every pooled connection ("cached plan must not
/// change result type") once a newer release, rolling out beside this one, adds a column to
/// the table: the services name the columns they read (a newer release's migration that
/// adds a column otherwise makes the older release's processes answer 503 until restarted).
#[test]
fn no_service_statement_reads_every_column_with_a_star() {
    fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services");
    let mut files = Vec::new();
    sources(&services, &mut files);
    let starred: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            let lines: Vec<String> = text
                .lines()
                .enumerate()
                .filter(|(_, line)| line.contains("SELECT *") || line.contains("RETURNING *"))
                .map(|(number, line)| format!("{}:{}: {}", file.display(), number + 1, line.trim()))
                .collect();
            lines
        })
        .collect();
    assert!(
        files.len() > 20,
        "no service sources under {}",
        services.display()
    );
    assert!(
        starred.is_empty(),
        "name the columns instead:\n{}",
        starred.join("\n")
    );
}
