//! Where the services' databases, broker and ports are, read from the environment as each
//! service's own binary reads them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use conveyor::{AmqpConfig, Names};
use platform::{OwnSettings, ServiceConfig};

use crate::roster::ServiceName;

/// Where the services' databases, broker and ports are.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub amqp: AmqpConfig,
    /// The services that connect as their own broker user (`<SERVICE>_AMQP_URL`); the others
    /// use `amqp`.
    pub service_amqp: BTreeMap<ServiceName, AmqpConfig>,
    /// One URL per service.
    pub database_urls: BTreeMap<ServiceName, String>,
    /// One port per service; 0 picks a free one.
    pub ports: BTreeMap<ServiceName, u16>,
    /// Database connections per service instance.
    pub pool_size: u32,
    /// HTTP requests each instance serves at once, when `<SERVICE>_HTTP_CONCURRENCY` says.
    pub http_concurrency: Option<u32>,
    /// Consumer workers of the services whose `<SERVICE>_CONSUMER_WORKERS` is set.
    pub consumer_workers: BTreeMap<ServiceName, usize>,
    pub listen_addr: IpAddr,
    /// Every service's exchanges, queues and broker users: under `CONVEYOR_NAME_PREFIX`, if set.
    pub names: Names,
    /// The services' own settings given in code (`orders_service::Settings`, …); a service
    /// reads what is not given here from the environment.
    pub own_settings: OwnSettings,
    /// Where the users service is when it is not started here (`USERS_URL`).
    pub users_url: String,
    /// How long each instance may take to stop (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: std::time::Duration,
}

impl SystemConfig {
    /// Each service's settings from the environment, as its own binary reads them.
    ///
    /// # Errors
    /// The first setting that cannot work.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut database_urls = BTreeMap::new();
        let mut ports = BTreeMap::new();
        let mut listen_addr = IpAddr::from([127, 0, 0, 1]);
        let mut pool_size = platform::config::DEFAULT_POOL_SIZE;
        let mut http_concurrency = None;
        let mut consumer_workers = BTreeMap::new();
        let mut users_url = platform::config::DEFAULT_USERS_URL.to_owned();
        let mut shutdown_timeout = platform::config::DEFAULT_SHUTDOWN_TIMEOUT;
        let mut service_amqp = BTreeMap::new();
        for service in ServiceName::all() {
            if let Some(amqp) = platform::config::own_amqp_from_env(service.as_str()) {
                service_amqp.insert(service, amqp);
            }
            let config = ServiceConfig::from_env(service.as_str(), service.default_port())?;
            users_url = config.users_url;
            shutdown_timeout = config.shutdown_timeout;
            database_urls.insert(service, config.database_url);
            ports.insert(service, config.port);
            listen_addr = config.listen_addr;
            pool_size = config.pool_size;
            http_concurrency = config.http_concurrency;
            if let Some(workers) = config.consumer_workers {
                consumer_workers.insert(service, workers);
            }
        }
        Ok(Self {
            amqp: AmqpConfig::from_env("conveyor"),
            service_amqp,
            database_urls,
            ports,
            pool_size,
            http_concurrency,
            consumer_workers,
            listen_addr,
            names: Names::from_env()?,
            own_settings: reference_settings_from_env()?,
            users_url,
            shutdown_timeout,
        })
    }

    /// For a run of this process's own (the demo, a benchmark): free ports, so it never
    /// clashes with a `conveyor serve` already running, and an admin account (the
    /// configured one, else one made for the run), which it answers.
    pub fn for_own_run(&mut self) -> users_service::AdminAccount {
        self.ports.values_mut().for_each(|port| *port = 0);
        let mut users: users_service::Settings = self.own_settings.get().unwrap_or_default();
        let admin = users.admin.get_or_insert_with(run_admin).clone();
        self.own_settings.insert(users);
        admin
    }

    /// The secret users trusts the gateway's `X-Forwarded-For` by, for a gateway started in
    /// this process beside users: `GATEWAY_FORWARD_SECRET` when set (users read it already),
    /// else a new one for this run, given to users here. Bind the gateway with it.
    ///
    /// # Errors
    /// When the run's own secret is refused (it never is: 64 hexadecimal digits).
    pub fn share_forward_secret(&mut self) -> anyhow::Result<String> {
        let from_env = std::env::var("GATEWAY_FORWARD_SECRET")
            .ok()
            .filter(|secret| !secret.is_empty());
        let secret = from_env.unwrap_or_else(|| {
            let random = || uuid::Uuid::new_v4().simple().to_string();
            format!("{}{}", random(), random())
        });
        let forward_secret = users_service::ForwardSecret::new(&secret)?;
        self.own_settings
            .edit(|users: &mut users_service::Settings| {
                users.forward_secret = Some(forward_secret)
            });
        Ok(secret)
    }

    /// The settings of one instance of `service`; instances after the first take a free port.
    pub(crate) fn instance(
        &self,
        service: ServiceName,
        replica: usize,
        users_url: &str,
    ) -> ServiceConfig {
        let port = if replica == 0 {
            self.ports.get(&service).copied().unwrap_or(0)
        } else {
            0
        };
        ServiceConfig {
            service: service.as_str().to_owned(),
            database_url: self
                .database_urls
                .get(&service)
                .cloned()
                .unwrap_or_default(),
            pool_size: self.pool_size,
            http_concurrency: self.http_concurrency,
            consumer_workers: self.consumer_workers.get(&service).copied(),
            port,
            listen_addr: self.listen_addr,
            amqp: self
                .service_amqp
                .get(&service)
                .unwrap_or(&self.amqp)
                .named(format!("{service}-service-{}", replica + 1)),
            names: self.names.clone(),
            users_url: users_url.to_owned(),
            shutdown_timeout: self.shutdown_timeout,
            own_settings: self.own_settings.clone(),
        }
    }
}

/// The reference services' own settings, read here so that one that cannot work stops the
/// start before anything runs (a service added later reads its own when it is built).
fn reference_settings_from_env() -> anyhow::Result<OwnSettings> {
    let mut settings = OwnSettings::default();
    settings.insert(orders_service::Settings::from_env()?);
    settings.insert(shipping_service::Settings::from_env()?);
    settings.insert(users_service::Settings::from_env()?);
    Ok(settings)
}

/// An admin account for a run of services in this process (the demo's, a test's): a fixed
/// email whose password is new each run, so nothing piles up and no password is reused.
pub fn run_admin() -> users_service::AdminAccount {
    users_service::AdminAccount {
        email: "run-admin@conveyor.invalid".to_owned(),
        password: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
    }
}
