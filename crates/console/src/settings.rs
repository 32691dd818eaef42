//! Where the console listens and what it reads: the broker (`AMQP_URL`, the management API
//! at `RABBITMQ_MANAGEMENT_URL`) and users (`USERS_URL`), whose tokens sign operators in.

use std::collections::BTreeMap;
use std::net::IpAddr;

use conveyor::{AmqpConfig, Names};
use platform::config::{ConfigError, DEFAULT_USERS_URL, parse_env};

/// The port the console listens on unless `CONSOLE_PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8090;

/// The console's settings. Not `Debug`: database URLs may hold passwords.
#[derive(Clone)]
pub struct ConsoleSettings {
    /// `LISTEN_ADDR`, as for the services (default 127.0.0.1).
    pub listen_addr: IpAddr,
    /// `CONSOLE_PORT`; 0 picks a free one.
    pub port: u16,
    /// `USERS_URL`: where operators sign in and the token keys are published.
    pub users_url: String,
    /// `AMQP_URL`: the operator's broker user, as for `conveyor dlq`.
    pub amqp: AmqpConfig,
    /// `CONVEYOR_NAME_PREFIX`'s names.
    pub names: Names,
    /// Each service's database (`<SERVICE>_DATABASE_URL`, the services' default): a gentle
    /// replay reads its inbox to know which letters were handled.
    pub database_urls: BTreeMap<String, String>,
    /// Each service's base URL (`<SERVICE>_URL`, else its default port here): a flow's
    /// diagnosis asks a waiting service's `/readyz`.
    pub service_urls: BTreeMap<String, String>,
    /// `CONSOLE_LOGS_URL`: Grafana, with Loki as its `loki` data source; a flow's timeline
    /// links each step to its log lines there. None: no links.
    pub logs_url: Option<String>,
    /// `CONSOLE_TRACES_URL`: Jaeger's UI; a flow's timeline links each step to its trace.
    pub traces_url: Option<String>,
}

impl ConsoleSettings {
    /// The settings from the environment, with the services' defaults.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable whose value cannot work.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: parse_env(
                "LISTEN_ADDR",
                IpAddr::from([127, 0, 0, 1]),
                "an IP address, like 127.0.0.1 or 0.0.0.0",
            )?,
            port: parse_env("CONSOLE_PORT", DEFAULT_PORT, "a port number (0-65535)")?,
            users_url: std::env::var("USERS_URL")
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|_| DEFAULT_USERS_URL.to_owned()),
            amqp: AmqpConfig::from_env("conveyor-console"),
            names: Names::from_env()?,
            database_urls: system::ServiceName::all()
                .map(|service| {
                    let name = service.as_str();
                    let variable = format!("{}_DATABASE_URL", name.to_ascii_uppercase());
                    let url = std::env::var(variable).unwrap_or_else(|_| {
                        format!("postgres://postgres@127.0.0.1:5432/conveyor_{name}")
                    });
                    (name.to_owned(), url)
                })
                .collect(),
            service_urls: system::ServiceName::all()
                .map(|service| {
                    let name = service.as_str();
                    let variable = format!("{}_URL", name.to_ascii_uppercase());
                    let url = std::env::var(variable)
                        .unwrap_or_else(|_| format!("http://127.0.0.1:{}", service.default_port()));
                    (name.to_owned(), url.trim_end_matches('/').to_owned())
                })
                .collect(),
            logs_url: optional_url("CONSOLE_LOGS_URL"),
            traces_url: optional_url("CONSOLE_TRACES_URL"),
        })
    }
}

/// A URL setting that may be absent (or blank), without its trailing slash.
fn optional_url(variable: &str) -> Option<String> {
    std::env::var(variable)
        .ok()
        .map(|url| url.trim().trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
}
