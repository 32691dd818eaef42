//! Password guessing, tried as an attacker would: bursts of wrong passwords straight to
//! users, through the gateway, through an encoded path, spread over three users replicas
//! and with forged `X-Forwarded-For` headers. users counts failed sign-ins per login and
//! client address in its database, so every way in gets the same few password checks and
//! then 429 with `Retry-After`, while the victim, from another address, still signs in.
//!
//! The gateway's own sign-in limit is lifted in these tests: it holds only for what passes
//! that one gateway, and what is tested is the limit that holds for whatever reaches users,
//! however fast. Clients connect from other loopback addresses (`127.0.0.2`, `127.0.0.3`, …,
//! all of them the loopback interface's on Linux), so the gateway sees several clients.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use api_gateway::routes::RouteClass;
use conveyor::{Shutdown, ShutdownTrigger};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::auth::sign_up;
use crate::gateway::settings_for;
use crate::helpers::{System, start};

/// Failed sign-ins checked before the waits begin: users' default.
const FREE: usize = 5;
/// Wrong passwords in each burst, sent at once.
const BURST: usize = 50;
/// Checks a burst may get past [`FREE`]: one per wait (1 s, 2 s, 4 s) that ends while the
/// burst is still being counted, on a slow machine.
const SLACK: usize = 3;
/// The address the victim signs in from.
const VICTIM: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The address the attacker guesses from.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// What users counts a request straight from the attacker under: its peer's address, never
/// an address a header claims.
const ATTACKER_STRAIGHT: &str = "127.0.0.3";
/// The header with which the gateway proves it is the gateway.
const GATEWAY_HEADER: &str = "x-conveyor-gateway";
/// How the gateway's own refusal of a path starts.
const PATH_REFUSED: &str = "the request path is refused: ";

/// Instances of users on the test's users database, as replicas (or processes) would be.
struct UsersReplicas {
    urls: Vec<String>,
    stop: ShutdownTrigger,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl UsersReplicas {
    /// `count` instances that trust the gateway's `secret`.
    async fn start(system: &System, count: usize, secret: &str) -> Self {
        let (stop, shutdown) = Shutdown::new();
        let (mut urls, mut tasks) = (Vec::new(), Vec::new());
        for replica in 0..count {
            let mut config = platform::ServiceConfig {
                service: "users".to_owned(),
                database_url: system.database_url("users"),
                pool_size: 8,
                http_concurrency: None,
                consumer_workers: None,
                port: 0,
                listen_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                amqp: conveyor::AmqpConfig::new(
                    system.env.amqp.url(),
                    format!("users replica {replica}"),
                ),
                names: system.names.clone(),
                users_url: String::new(),
                shutdown_timeout: platform::config::DEFAULT_SHUTDOWN_TIMEOUT,
                own_settings: platform::OwnSettings::default(),
            };
            config.own_settings.insert(users_service::Settings {
                forward_secret: Some(users_service::ForwardSecret::new(secret).unwrap()),
                ..users_service::Settings::default()
            });
            let service = users_service::build(config).await.unwrap();
            urls.push(format!("http://127.0.0.1:{}", service.port()));
            tasks.push(tokio::spawn(service.run(shutdown.clone())));
        }
        Self { urls, stop, tasks }
    }

    /// Every instance's `POST /auth/token`.
    fn token_urls(&self) -> Vec<String> {
        self.urls
            .iter()
            .map(|url| format!("{url}/auth/token"))
            .collect()
    }

    async fn stop(self) {
        self.stop.fire();
        for task in self.tasks {
            task.await.unwrap().unwrap();
        }
    }
}

/// A gateway in front of `users` that marks what it sends on with `secret`, its own
/// sign-in limit lifted.
struct Front {
    url: String,
    stop: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Front {
    async fn start(system: &System, users: &UsersReplicas, secret: &str) -> Self {
        let users = users.urls.join(",");
        let mut settings = settings_for(system, &[("users", users.as_str())]).await;
        settings.port = 0;
        settings
            .rates
            .per_second
            .insert(RouteClass::Auth, NonZeroU32::MAX);
        let gateway = api_gateway::Gateway::bind_with_forward_secret(settings, Some(secret))
            .await
            .unwrap();
        let url = format!("http://127.0.0.1:{}", gateway.port());
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(gateway.run(shutdown));
        Self { url, stop, task }
    }

    fn token_url(&self) -> String {
        format!("{}/api/auth/token", self.url)
    }

    async fn stop(self) {
        self.stop.fire();
        self.task.await.unwrap().unwrap();
    }
}

/// A secret for the gateway and users of one test.
fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A client whose connections come from `address`.
fn client_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .build()
        .unwrap()
}

/// One sign-in at `url`: the status, `Retry-After` in seconds, and the body.
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    email: &str,
    password: &str,
    headers: &[(&'static str, String)],
) -> (StatusCode, Option<u64>, Value) {
    let body = json!({ "grant_type": "password", "email": email, "password": password });
    let mut request = client.post(url).json(&body);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let wait = answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    (status, wait, answer.json().await.unwrap_or(Value::Null))
}

/// What a burst of wrong passwords got: passwords checked (each a 401), attempts refused
/// unchecked (each a 429) with their `Retry-After`, and any other answer.
#[derive(Debug, Default)]
struct Outcome {
    checked: usize,
    refused: usize,
    waits: Vec<u64>,
    others: Vec<(StatusCode, Value)>,
}

impl Outcome {
    /// The free failures were checked and at most [`SLACK`] more; every other attempt was
    /// refused with a `Retry-After` between 1 s and 15 minutes.
    fn assert_limited(&self, how: &str) {
        assert!(self.others.is_empty(), "{how}: {self:?}");
        assert!(
            (FREE..=FREE + SLACK).contains(&self.checked),
            "{how}: {} passwords checked in a burst of {BURST}: {self:?}",
            self.checked
        );
        assert_eq!(self.checked + self.refused, BURST, "{how}: {self:?}");
        assert_eq!(
            self.waits.len(),
            self.refused,
            "{how}: every 429 says when to come back: {self:?}"
        );
        assert!(
            self.waits.iter().all(|wait| (1..=900).contains(wait)),
            "{how}: {self:?}"
        );
    }
}

/// [`BURST`] wrong passwords for `email` at once, the n-th to `urls[n % urls.len()]` with
/// the headers `headers(n)`.
async fn burst(
    client: &reqwest::Client,
    urls: &[String],
    email: &str,
    headers: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Outcome {
    let attempts = (0..BURST).map(|n| {
        let url = &urls[n % urls.len()];
        let headers = headers(n);
        async move { attempt(client, url, email, "not the password", &headers).await }
    });
    let mut outcome = Outcome::default();
    for (status, wait, body) in futures_util::future::join_all(attempts).await {
        match status {
            StatusCode::UNAUTHORIZED => outcome.checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                outcome.refused += 1;
                outcome.waits.extend(wait);
            }
            _ => outcome.others.push((status, body)),
        }
    }
    outcome
}

fn no_headers(_: usize) -> Vec<(&'static str, String)> {
    Vec::new()
}

/// The failure counts users keeps for `login`: (address, failures), by address.
async fn counts(system: &System, login: &str) -> Vec<(String, i32)> {
    let pool = sqlx::PgPool::connect(&system.database_url("users"))
        .await
        .unwrap();
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT address, failures FROM sign_in_failures WHERE login = $1 ORDER BY address",
    )
    .bind(login)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

/// Sets the count of `login` from `address` to `failures`, the last `seconds_ago`: an
/// attack that has gone on for a while, without the test waiting for it.
async fn rewrite_count(
    system: &System,
    login: &str,
    address: &str,
    failures: i32,
    seconds_ago: f64,
) {
    let pool = sqlx::PgPool::connect(&system.database_url("users"))
        .await
        .unwrap();
    let rewritten = sqlx::query(
        "UPDATE sign_in_failures SET failures = $3,
             last_failed_at = now() - make_interval(secs => $4)
         WHERE login = $1 AND address = $2",
    )
    .bind(login)
    .bind(address)
    .bind(failures)
    .bind(seconds_ago)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(
        rewritten.rows_affected(),
        1,
        "no count for {login} from {address}"
    );
}

/// The one count of `login`: its address and failures.
async fn only_count(system: &System, login: &str) -> (String, usize) {
    let rows = counts(system, login).await;
    assert_eq!(rows.len(), 1, "{login}: {rows:?}");
    let (address, failures) = rows[0].clone();
    (address, usize::try_from(failures).unwrap())
}

#[tokio::test]
async fn guesses_straight_to_users_or_through_the_gateway_get_a_few_checks_then_429() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let secret = new_secret();
    let users = UsersReplicas::start(&system, 1, &secret).await;
    let gateway = Front::start(&system, &users, &secret).await;
    let attacker = client_from(ATTACKER);

    // Straight to users, past the gateway.
    let (_, straight, _) = sign_up(&system, "FR").await;
    let outcome = burst(&attacker, &users.token_urls(), &straight, no_headers).await;
    outcome.assert_limited("straight to users");
    let (address, failures) = only_count(&system, &straight).await;
    assert_eq!(address, ATTACKER_STRAIGHT);
    assert_eq!(failures, outcome.checked, "each check was counted, once");
    // Through the gateway: counted under the attacker's address, vouched for by the gateway.
    let (_, through, _) = sign_up(&system, "FR").await;
    let outcome = burst(&attacker, &[gateway.token_url()], &through, no_headers).await;
    outcome.assert_limited("through the gateway");
    assert_eq!(
        only_count(&system, &through).await,
        ("127.0.0.3".to_owned(), outcome.checked)
    );
    // Through a path another parser reads as the sign-in: the gateway refuses it itself.
    let (_, encoded, _) = sign_up(&system, "FR").await;
    for path in [
        "/api/auth/%74oken",
        "/api/auth%2ftoken",
        "/api/users/..%2fauth/token",
    ] {
        let url = format!("{}{path}", gateway.url);
        for _ in 0..10 {
            let (status, _, body) = attempt(&attacker, &url, &encoded, "wrong", &[]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            let error = body["error"].as_str().unwrap_or_default();
            assert!(error.starts_with(PATH_REFUSED), "{path}: {body}");
        }
    }
    assert!(
        counts(&system, &encoded).await.is_empty(),
        "an encoded path reached users"
    );

    gateway.stop().await;
    users.stop().await;
    system.stop().await;
}

#[tokio::test]
async fn spreading_guesses_over_three_users_replicas_gains_nothing() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let secret = new_secret();
    let users = UsersReplicas::start(&system, 3, &secret).await;
    let gateway = Front::start(&system, &users, &secret).await;
    let attacker = client_from(ATTACKER);

    // Straight to each replica in turn: they share one count, in their database.
    let (_, straight, _) = sign_up(&system, "FR").await;
    let urls = users.token_urls();
    assert_eq!(urls.len(), 3);
    let outcome = burst(&attacker, &urls, &straight, no_headers).await;
    outcome.assert_limited("spread over three replicas");
    let (address, failures) = only_count(&system, &straight).await;
    assert_eq!(address, ATTACKER_STRAIGHT);
    assert_eq!(failures, outcome.checked);
    // Through a gateway that sends each request to the next replica.
    let (_, through, _) = sign_up(&system, "FR").await;
    let outcome = burst(&attacker, &[gateway.token_url()], &through, no_headers).await;
    outcome.assert_limited("through the gateway, over three replicas");
    assert_eq!(
        only_count(&system, &through).await,
        ("127.0.0.3".to_owned(), outcome.checked)
    );

    gateway.stop().await;
    users.stop().await;
    system.stop().await;
}

/// Each attempt claims another address, in every header a proxy might read.
fn spoofed(n: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "x-forwarded-for",
            format!("10.0.{}.{}", n / 250, n % 250 + 1),
        ),
        ("forwarded", format!("for=10.1.0.{}", n % 250 + 1)),
        ("x-real-ip", format!("10.2.0.{}", n % 250 + 1)),
    ]
}

#[tokio::test]
async fn a_forged_forwarded_address_changes_nothing_users_counts() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let secret = new_secret();
    let users = UsersReplicas::start(&system, 1, &secret).await;
    let gateway = Front::start(&system, &users, &secret).await;
    let attacker = client_from(ATTACKER);

    // To the gateway: it drops the claims and forwards the connection's own address.
    let (_, through, _) = sign_up(&system, "FR").await;
    let outcome = burst(&attacker, &[gateway.token_url()], &through, spoofed).await;
    outcome.assert_limited("claiming other addresses to the gateway");
    assert_eq!(
        only_count(&system, &through).await,
        ("127.0.0.3".to_owned(), outcome.checked)
    );
    // Straight to users without the gateway's secret, or with a wrong one: ignored.
    let (_, straight, _) = sign_up(&system, "FR").await;
    let wrong_secret = |n: usize| {
        let mut headers = spoofed(n);
        if n.is_multiple_of(2) {
            headers.push((GATEWAY_HEADER, new_secret()));
        }
        headers
    };
    let outcome = burst(&attacker, &users.token_urls(), &straight, wrong_secret).await;
    outcome.assert_limited("claiming other addresses straight to users");
    let (address, failures) = only_count(&system, &straight).await;
    assert_eq!(address, ATTACKER_STRAIGHT);
    assert_eq!(failures, outcome.checked);
    // With the secret, as the gateway sends it, the forwarded address is the one counted.
    let (_, vouched, _) = sign_up(&system, "FR").await;
    let as_gateway = [
        ("x-forwarded-for", "198.51.100.9".to_owned()),
        (GATEWAY_HEADER, secret.clone()),
    ];
    let urls = users.token_urls();
    let (status, _, body) = attempt(&attacker, &urls[0], &vouched, "wrong", &as_gateway).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        counts(&system, &vouched).await,
        [("198.51.100.9".to_owned(), 1)]
    );

    gateway.stop().await;
    users.stop().await;
    system.stop().await;
}

#[tokio::test]
async fn the_victim_signs_in_from_another_address_during_the_attack() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let secret = new_secret();
    let users = UsersReplicas::start(&system, 1, &secret).await;
    let gateway = Front::start(&system, &users, &secret).await;
    let (attacker, victim) = (client_from(ATTACKER), client_from(VICTIM));
    let (_, email, password) = sign_up(&system, "FR").await;

    let outcome = burst(&attacker, &[gateway.token_url()], &email, no_headers).await;
    outcome.assert_limited("the attack");
    // The attack goes on for minutes: 14 failures, the last a second ago, 512 s to wait.
    rewrite_count(&system, &email, "127.0.0.3", 14, 1.0).await;
    let url = gateway.token_url();
    let (status, wait, body) = attempt(&attacker, &url, &email, &password, &[]).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password is not checked from the attacker's address: {body}"
    );
    assert!(
        wait.is_some_and(|wait| (500..=512).contains(&wait)),
        "{wait:?}"
    );
    // The victim, from their own address, is not slowed down at all.
    for _ in 0..3 {
        let (status, _, answer) = attempt(&victim, &url, &email, &password, &[]).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["token_type"], "Bearer", "{answer}");
        assert!(
            answer["access_token"]
                .as_str()
                .is_some_and(|token| !token.is_empty()),
            "{answer}"
        );
    }
    // Their success clears their own count only, not the attacker's.
    assert_eq!(
        counts(&system, &email).await,
        [("127.0.0.3".to_owned(), 14)]
    );

    gateway.stop().await;
    users.stop().await;
    system.stop().await;
}

/// Signs in with the right password from `client`, waiting as told while refused.
async fn sign_in_when_allowed(client: &reqwest::Client, url: &str, email: &str, password: &str) {
    for _ in 0..5 {
        let (status, wait, body) = attempt(client, url, email, password, &[]).await;
        match status {
            StatusCode::OK => return,
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = wait.expect("a 429 says when to come back");
                assert!(wait <= 16, "{wait} s after a burst of {BURST}");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            _ => panic!("signing in answered {status}: {body}"),
        }
    }
    panic!("{email} could not sign in after five waits");
}

#[tokio::test]
async fn a_success_clears_the_count_and_the_wait_doubles_until_the_window_passes() {
    let system = start(&["users"], Duration::from_secs(60)).await;
    let secret = new_secret();
    let users = UsersReplicas::start(&system, 1, &secret).await;
    let gateway = Front::start(&system, &users, &secret).await;
    let client = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)));
    let (_, email, password) = sign_up(&system, "FR").await;
    let url = gateway.token_url();

    burst(&client, std::slice::from_ref(&url), &email, no_headers)
        .await
        .assert_limited("before the success");
    sign_in_when_allowed(&client, &url, &email, &password).await;
    assert!(
        counts(&system, &email).await.is_empty(),
        "the success cleared the count"
    );
    // A fresh count: the free failures are checked again.
    burst(&client, std::slice::from_ref(&url), &email, no_headers)
        .await
        .assert_limited("after the success");

    // The wait doubles with each failure past the free ones, up to 15 minutes.
    for (failures, longest) in [(6_i32, 2_u64), (10, 32), (14, 512), (15, 900), (30, 900)] {
        rewrite_count(&system, &email, "127.0.0.4", failures, 0.0).await;
        let (status, wait, body) = attempt(&client, &url, &email, "wrong", &[]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{failures}: {body}");
        let wait = wait.unwrap();
        assert!(
            (longest - 2..=longest).contains(&wait),
            "after {failures} failures: {wait} s"
        );
    }
    // Once the window has passed since the last failure, the count starts again.
    rewrite_count(&system, &email, "127.0.0.4", 30, 3601.0).await;
    let (status, _, body) = attempt(&client, &url, &email, "wrong", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(counts(&system, &email).await, [("127.0.0.4".to_owned(), 1)]);

    gateway.stop().await;
    users.stop().await;
    system.stop().await;
}
