//! The gateway's settings from the environment: where the services it is given are
//! (`<SERVICE>_URL`), its port, rates, timeouts and breakers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use conveyor::{AmqpConfig, Names};
use platform::config::{parse_env, parse_env_within};
use platform::routes::ServiceTable;
use platform::{ConfigError, Declaration};

use crate::breaker::BreakerSettings;
use crate::limit::RateSettings;
use crate::routes::RouteClass;

pub const DEFAULT_PORT: u16 = 8080;

/// The variables the gateway reads whatever its services, as (variable, meaning); with the
/// services' URLs and the forward secret, [`gateway_settings`].
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "GATEWAY_PORT",
        "HTTP port; 0 picks a free one [default: 8080]",
    ),
    ("LISTEN_ADDR", "address it listens on [default: 127.0.0.1]"),
    (
        "GATEWAY_RATE_AUTH, GATEWAY_RATE_READ, GATEWAY_RATE_WRITE",
        "requests per second each client (a token's subject, else an address) may send to sign-in and sign-up, to GETs, and to the rest; bursts of one second's worth [default: 10, 200, 100]",
    ),
    (
        "GATEWAY_UPSTREAM_TIMEOUT",
        "seconds a service may take to answer a request passed on (then 504) [default: 10]",
    ),
    (
        "GATEWAY_SUMMARY_TIMEOUT_MS",
        "milliseconds a summary may take; parts not in by then are empty and named in `degraded` [default: 2000]",
    ),
    (
        "GATEWAY_BREAKER_FAILURES, GATEWAY_BREAKER_COOL_DOWN",
        "failures in a row that open an upstream's breaker, and seconds before a probe [default: 5, 10]",
    ),
    (
        "GATEWAY_DATABASE_URL",
        "its own Postgres database, for the ids of events taken over HTTP; created if missing [default: postgres://postgres@127.0.0.1:5432/conveyor_gateway]",
    ),
    (
        "AMQP_URL",
        "RabbitMQ, where POST /api/events publishes; several brokers of one cluster separated by commas [default: amqp://guest:guest@127.0.0.1:5672/%2f]",
    ),
    (
        "CONVEYOR_NAME_PREFIX",
        "the prefix of the system's exchanges and broker users, as its services have it: POST /api/events publishes to <prefix>.conveyor.events; 1 to 64 ASCII letters, digits, '-' or '_', starting with a letter or digit, not amq [default: empty: conveyor.events]",
    ),
    (
        "GATEWAY_EVENT_ID_RETENTION",
        "days an event id taken over HTTP is remembered, so the same id is accepted once; keep it at least the consumers' inbox retention [default: 7]",
    ),
    ("RUST_LOG", "log filter [default: info]"),
    (
        "LOG_FORMAT",
        "json or pretty [default: pretty on a terminal, else json]",
    ),
];

/// Every variable the gateway in front of `services` reads, as (variables, meaning with its
/// default), for `--help` and the book's reference.
pub fn gateway_settings(services: &[&Declaration]) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|(name, meaning)| ((*name).to_owned(), (*meaning).to_owned()))
        .collect();
    settings.push(urls_setting(services));
    settings.push((
        crate::proxy::FORWARD_SECRET_VARIABLE.to_owned(),
        FORWARD_SECRET_MEANING.to_owned(),
    ));
    settings
}

const FORWARD_SECRET_MEANING: &str = "a secret of 32 visible ASCII characters or more, set the same for users: sent to users as X-Conveyor-Gateway beside X-Forwarded-For (the client's address; any Forwarded, X-Forwarded-For or X-Real-IP a client sends is dropped), so users believes that address and counts failed sign-ins per client, not per gateway [default: none: users ignores the forwarded address]";

/// The line of `services`' URLs, as (variables, meaning).
fn urls_setting(services: &[&Declaration]) -> (String, String) {
    let variables: Vec<String> = services
        .iter()
        .map(|service| url_variable(service.name))
        .collect();
    let defaults: Vec<String> = services
        .iter()
        .map(|service| format!("{}: {}", service.name, default_url(service)))
        .collect();
    let meaning = format!(
        "where each service is: one URL, or several instances' separated by commas (requests go to each in turn); tokens are checked against the keys users publishes [default: {}]",
        defaults.join(", ")
    );
    (variables.join(", "), meaning)
}

/// `ORDERS_URL`.
fn url_variable(service: &str) -> String {
    format!("{}_URL", service.to_ascii_uppercase())
}

fn default_url(service: &Declaration) -> String {
    format!("http://127.0.0.1:{}", service.default_port)
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The services the gateway routes to, each with its route table: what it publishes.
    pub services: Vec<ServiceTable>,
    /// Base URL of each service; several instances' separated by commas.
    pub urls: BTreeMap<String, String>,
    pub port: u16,
    pub listen_addr: IpAddr,
    pub rates: RateSettings,
    pub upstream_timeout: Duration,
    pub summary_timeout: Duration,
    pub breaker: BreakerSettings,
    pub database_url: String,
    pub amqp: AmqpConfig,
    /// Where `POST /api/events` publishes: the events exchange of these names.
    pub names: Names,
    pub event_id_retention: Duration,
}

impl Settings {
    /// The defaults, with the services of `services` at `urls`.
    pub fn with_urls(services: Vec<ServiceTable>, urls: BTreeMap<String, String>) -> Self {
        Self {
            services,
            urls,
            port: DEFAULT_PORT,
            listen_addr: IpAddr::from([127, 0, 0, 1]),
            rates: RateSettings::default(),
            upstream_timeout: Duration::from_secs(10),
            summary_timeout: Duration::from_secs(2),
            breaker: BreakerSettings::default(),
            database_url: "postgres://postgres@127.0.0.1:5432/conveyor_gateway".to_owned(),
            amqp: AmqpConfig::new(conveyor::DEFAULT_AMQP_URL, "api-gateway"),
            names: Names::default(),
            event_id_retention: Duration::from_secs(7 * 86_400),
        }
    }

    /// The gateway in front of `services`, with the variables [`gateway_settings`] lists
    /// read (the forward secret is read at [`crate::Gateway::bind`]).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable whose value cannot work.
    pub fn from_env(services: &[&Declaration]) -> Result<Self, ConfigError> {
        let urls = services
            .iter()
            .map(|service| {
                let url = std::env::var(url_variable(service.name))
                    .unwrap_or_else(|_| default_url(service));
                (
                    service.name.to_owned(),
                    url.trim_end_matches('/').to_owned(),
                )
            })
            .collect();
        let tables = services.iter().map(|service| service.table()).collect();
        let mut settings = Self::with_urls(tables, urls);
        if let Ok(url) = std::env::var("GATEWAY_DATABASE_URL") {
            settings.database_url = url;
        }
        settings.amqp = AmqpConfig::from_env("api-gateway");
        settings.names = Names::from_env()?;
        if let Some(days) =
            parse_env_within("GATEWAY_EVENT_ID_RETENTION", 1..=365, "days, from 1 to 365")?
        {
            settings.event_id_retention = Duration::from_secs(days * 86_400);
        }
        settings.port = parse_env("GATEWAY_PORT", DEFAULT_PORT, "a port number (0-65535)")?;
        settings.listen_addr = parse_env(
            "LISTEN_ADDR",
            settings.listen_addr,
            "an IP address, like 127.0.0.1 or 0.0.0.0",
        )?;
        for class in RouteClass::ALL {
            let variable = format!("GATEWAY_RATE_{}", class.as_str().to_ascii_uppercase());
            if let Some(rate) =
                parse_env_within(&variable, 1..=1_000_000, "requests per second, from 1")?
            {
                settings
                    .rates
                    .per_second
                    .insert(class, NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN));
            }
        }
        if let Some(seconds) = parse_env_within(
            "GATEWAY_UPSTREAM_TIMEOUT",
            1..=600,
            "seconds, from 1 to 600",
        )? {
            settings.upstream_timeout = Duration::from_secs(seconds);
        }
        if let Some(millis) = parse_env_within(
            "GATEWAY_SUMMARY_TIMEOUT_MS",
            10..=60_000,
            "milliseconds, from 10 to 60000",
        )? {
            settings.summary_timeout = Duration::from_millis(millis);
        }
        if let Some(failures) =
            parse_env_within("GATEWAY_BREAKER_FAILURES", 1..=1000, "a count from 1")?
        {
            settings.breaker.failures_to_open = failures;
        }
        if let Some(seconds) =
            parse_env_within("GATEWAY_BREAKER_COOL_DOWN", 1..=3600, "seconds, from 1")?
        {
            settings.breaker.cool_down = Duration::from_secs(seconds);
        }
        Ok(settings)
    }
}
