//! A service's configuration, read once from the environment (12-factor) and checked before
//! anything starts.

use std::net::IpAddr;
use std::time::Duration;

use conveyor::{AmqpConfig, Names};

pub use crate::own_settings::OwnSettings;

/// Database connections per service instance unless `<SERVICE>_DATABASE_POOL_SIZE` says;
/// five services with three instances each stay within Postgres's default 100 connections
/// only with a smaller figure (`conveyor demo --replicas` picks one).
pub const DEFAULT_POOL_SIZE: u32 = 12;

/// Connections of the pool that HTTP requests may never take: the consumer, the relay
/// and the tasks always have these (unless `<SERVICE>_HTTP_CONCURRENCY` says otherwise).
pub const KEPT_FOR_MESSAGING: u32 = 2;

/// Settings every service has.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub service: String,
    pub database_url: String,
    /// Connections to its database at most, shared by HTTP, consumer, relay and tasks.
    pub pool_size: u32,
    /// HTTP requests served at once, when `<SERVICE>_HTTP_CONCURRENCY` sets it; see
    /// [`ServiceConfig::http_concurrency`].
    pub http_concurrency: Option<u32>,
    /// The consumer's workers when `<SERVICE>_CONSUMER_WORKERS` sets them; the runtime's
    /// default otherwise.
    pub consumer_workers: Option<usize>,
    /// 0 picks a free port (tests).
    pub port: u16,
    pub listen_addr: IpAddr,
    pub amqp: AmqpConfig,
    /// Its exchanges, queues and broker users: under `CONVEYOR_NAME_PREFIX`, if set.
    pub names: Names,
    /// The users service, whose published keys verify every request's token.
    pub users_url: String,
    /// How long the service may take to stop once asked (`SHUTDOWN_TIMEOUT`, seconds):
    /// finishing requests and batches, then the outbox's last flush. What is still running
    /// then is given up (nothing is lost: unacknowledged deliveries return to the queue and
    /// unsent outbox rows are sent at the next start). Keep it below the orchestrator's
    /// grace period before it kills the process.
    pub shutdown_timeout: Duration,
    /// The service's own settings given in code; what is not given here it reads from the
    /// environment.
    pub own_settings: OwnSettings,
}

/// The shutdown budget when `SHUTDOWN_TIMEOUT` is unset: below Kubernetes' default grace
/// period (30 s) and the one docker-compose.yml sets.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);

/// Where users listens when nothing says otherwise (its default port).
pub const DEFAULT_USERS_URL: &str = "http://127.0.0.1:8081";

/// The environment holds a value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is not valid: {expected}")]
pub struct ConfigError {
    variable: String,
    value: String,
    expected: &'static str,
}

impl ConfigError {
    pub fn new(variable: &str, value: &str, expected: &'static str) -> Self {
        Self {
            variable: variable.to_owned(),
            value: value.to_owned(),
            expected,
        }
    }
}

/// A duration setting: `variable` as `30s`, `1500ms`, `2m` or a number of seconds, never
/// zero; `default` when unset.
///
/// # Errors
/// [`ConfigError`] naming `variable` when it does not parse or is zero.
pub fn duration_setting(variable: &str, default: Duration) -> Result<Duration, ConfigError> {
    let Ok(text) = std::env::var(variable) else {
        return Ok(default);
    };
    parse_duration(&text)
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| ConfigError::new(variable, &text, "a duration like 30s, 1500ms or 2m"))
}

/// `30s`, `1500ms`, `2m`, or a number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(millis) = text.strip_suffix("ms") {
        return millis.parse().ok().map(Duration::from_millis);
    }
    if let Some(minutes) = text.strip_suffix('m') {
        return minutes
            .parse::<u64>()
            .ok()
            .map(|m| Duration::from_secs(m * 60));
    }
    text.strip_suffix('s')
        .unwrap_or(text)
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// `CONVEYOR_NAME_PREFIX` refused, told as every other setting is.
impl From<conveyor::NamesError> for ConfigError {
    fn from(error: conveyor::NamesError) -> Self {
        Self::new(error.variable(), error.value(), Names::PREFIX_RULE)
    }
}

impl ServiceConfig {
    /// Reads `<SERVICE>_DATABASE_URL`, `<SERVICE>_PORT`, `LISTEN_ADDR`, `<SERVICE>_AMQP_URL` or
    /// `AMQP_URL`, `CONVEYOR_NAME_PREFIX` ([`Names::from_env`]), `USERS_URL` and
    /// `SHUTDOWN_TIMEOUT`, with DESIGN.md's defaults.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable whose value cannot work.
    pub fn from_env(service: &str, default_port: u16) -> Result<Self, ConfigError> {
        let prefix = service.to_ascii_uppercase();
        let database_url = std::env::var(format!("{prefix}_DATABASE_URL"))
            .unwrap_or_else(|_| format!("postgres://postgres@127.0.0.1:5432/conveyor_{service}"));
        let port = parse_env(
            &format!("{prefix}_PORT"),
            default_port,
            "a port number (0-65535)",
        )?;
        let pool_size = parse_env_within(
            &format!("{prefix}_DATABASE_POOL_SIZE"),
            2..=1000,
            "a number of connections from 2 to 1000",
        )?
        .unwrap_or(DEFAULT_POOL_SIZE);
        let http_concurrency = parse_env_within(
            &format!("{prefix}_HTTP_CONCURRENCY"),
            1..=pool_size - 1,
            "a number of requests from 1 to one less than the database pool size",
        )?;
        let consumer_workers = parse_env_within(
            &format!("{prefix}_CONSUMER_WORKERS"),
            1..=64,
            "a number from 1 to 64",
        )?;
        let shutdown_timeout = parse_env_within(
            "SHUTDOWN_TIMEOUT",
            2..=3600,
            "a number of seconds from 2 to 3600",
        )?
        .map_or(DEFAULT_SHUTDOWN_TIMEOUT, Duration::from_secs);
        let listen_addr = parse_env(
            "LISTEN_ADDR",
            IpAddr::from([127, 0, 0, 1]),
            "an IP address, like 127.0.0.1 or 0.0.0.0",
        )?;
        Ok(Self {
            service: service.to_owned(),
            database_url,
            pool_size,
            http_concurrency,
            consumer_workers,
            port,
            listen_addr,
            amqp: amqp_from_env(service),
            names: Names::from_env()?,
            users_url: std::env::var("USERS_URL")
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|_| DEFAULT_USERS_URL.to_owned()),
            shutdown_timeout,
            own_settings: OwnSettings::default(),
        })
    }
}

impl ServiceConfig {
    /// HTTP requests served at once: fewer than the pool's connections, so the consumer,
    /// the relay and the tasks always have some however slow or many the requests are.
    pub fn http_concurrency(&self) -> u32 {
        let most = self.pool_size.saturating_sub(1).max(1);
        self.http_concurrency
            .unwrap_or_else(|| self.pool_size.saturating_sub(KEPT_FOR_MESSAGING))
            .clamp(1, most)
    }
}

/// `<SERVICE>_AMQP_URL` (the service's own broker user, where each has one) or else
/// `AMQP_URL`, with connections named after the service.
pub fn amqp_from_env(service: &str) -> AmqpConfig {
    own_amqp_from_env(service).unwrap_or_else(|| AmqpConfig::from_env(format!("{service}-service")))
}

/// `<SERVICE>_AMQP_URL` when it is set: the service's own broker user.
pub fn own_amqp_from_env(service: &str) -> Option<AmqpConfig> {
    let own = format!("{}_AMQP_URL", service.to_ascii_uppercase());
    std::env::var(own)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .map(|url| AmqpConfig::new(url, format!("{service}-service")))
}

/// Reads an environment variable that must parse to a value within `range`; `None` when
/// it is unset.
///
/// # Errors
/// [`ConfigError`] when it is set but does not parse or is out of range.
pub fn parse_env_within<T: std::str::FromStr + PartialOrd>(
    variable: &str,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    let Ok(value) = std::env::var(variable) else {
        return Ok(None);
    };
    match value.trim().parse() {
        Ok(parsed) if range.contains(&parsed) => Ok(Some(parsed)),
        _ => Err(ConfigError::new(variable, &value, expected)),
    }
}

/// Reads and parses an environment variable, or gives the default when it is unset.
///
/// # Errors
/// [`ConfigError`] when it is set but does not parse.
pub fn parse_env<T: std::str::FromStr>(
    variable: &str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError> {
    match std::env::var(variable) {
        Ok(value) => value.trim().parse().map_err(|_| ConfigError {
            variable: variable.to_owned(),
            value,
            expected,
        }),
        Err(_) => Ok(default),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_units_operators_write() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("soon"), None);
    }
}
