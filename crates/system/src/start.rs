//! Starting services in this process and stopping them together.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context;
use conveyor::{AmqpConfig, Names, Shutdown};
use platform::ServiceConfig;
use tokio::task::JoinSet;

/// Where the services' databases, broker and ports are.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub amqp: AmqpConfig,
    /// One URL per service.
    pub database_urls: BTreeMap<String, String>,
    /// One port per service; 0 picks a free one.
    pub ports: BTreeMap<String, u16>,
    pub listen_addr: IpAddr,
    pub names: Names,
    pub orders: orders_service::Settings,
    pub shipping: shipping_service::Settings,
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
        for (service, port) in [
            ("users", users_service::DEFAULT_PORT),
            ("inventory", inventory_service::DEFAULT_PORT),
            ("orders", orders_service::DEFAULT_PORT),
            ("payments", payments_service::DEFAULT_PORT),
            ("shipping", shipping_service::DEFAULT_PORT),
        ] {
            let config = ServiceConfig::from_env(service, port)?;
            database_urls.insert(service.to_owned(), config.database_url);
            ports.insert(service.to_owned(), config.port);
            listen_addr = config.listen_addr;
        }
        Ok(Self {
            amqp: AmqpConfig::from_env("conveyor"),
            database_urls,
            ports,
            listen_addr,
            names: Names::default(),
            orders: orders_service::Settings::from_env()?,
            shipping: shipping_service::Settings::from_env()?,
        })
    }

    fn service(&self, service: &str) -> ServiceConfig {
        ServiceConfig {
            service: service.to_owned(),
            database_url: self.database_urls.get(service).cloned().unwrap_or_default(),
            port: self.ports.get(service).copied().unwrap_or(0),
            listen_addr: self.listen_addr,
            amqp: AmqpConfig::new(self.amqp.url(), format!("{service}-service")),
            names: self.names.clone(),
        }
    }
}

/// Services running in this process.
pub struct Running {
    /// Base URL of each started service's HTTP API.
    pub urls: BTreeMap<String, String>,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
}

impl Running {
    /// Waits until every service has stopped (after the shutdown fired).
    ///
    /// # Errors
    /// The first service that stopped with an error.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (service, result) = joined.context("a service task panicked")?;
            if let Err(error) = result {
                first_error.get_or_insert(error.context(format!("{service} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Declares the whole topology (so no event is published before the queues that want it
/// exist), then builds and starts `services` (all when empty).
///
/// # Errors
/// When the broker is unreachable, or a service cannot be built; nothing keeps running then.
pub async fn start(
    config: &SystemConfig,
    services: &[String],
    shutdown: Shutdown,
) -> anyhow::Result<Running> {
    let chosen: Vec<String> = if services.is_empty() {
        crate::SERVICES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        services.to_vec()
    };
    if let Some(unknown) = chosen
        .iter()
        .find(|service| !crate::SERVICES.contains(&service.as_str()))
    {
        anyhow::bail!(
            "unknown service {unknown:?}: choose from {}",
            crate::SERVICES.join(", ")
        );
    }
    let connection = config.amqp.connect().await?;
    crate::all_topology(&config.names)?
        .declare(&connection.create_channel().await?)
        .await?;
    let _ = connection.close(200, "topology declared".into()).await;
    let mut built = Vec::new();
    for service in &chosen {
        let service_config = config.service(service);
        let runner = match service.as_str() {
            "users" => users_service::build(service_config).await?,
            "inventory" => inventory_service::build(service_config).await?,
            "orders" => orders_service::build(service_config, config.orders.clone()).await?,
            "payments" => payments_service::build(service_config).await?,
            _ => shipping_service::build(service_config, config.shipping.clone()).await?,
        };
        built.push((service.clone(), runner));
    }
    let mut urls = BTreeMap::new();
    let mut tasks = JoinSet::new();
    for (service, runner) in built {
        let host = if config.listen_addr.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            config.listen_addr.to_string()
        };
        urls.insert(service.clone(), format!("http://{host}:{}", runner.port()));
        let shutdown = shutdown.clone();
        tasks.spawn(async move { (service, runner.run(shutdown).await) });
    }
    Ok(Running { urls, tasks })
}
