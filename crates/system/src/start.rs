//! Starting services in this process and stopping them together.

use std::collections::BTreeMap;

use conveyor::Shutdown;
use platform::NamedTasks;

use crate::config::SystemConfig;
use crate::roster::ServiceName;

/// Services running in this process.
pub struct Running {
    /// Base URLs of each started service's instances.
    pub urls: BTreeMap<ServiceName, Vec<String>>,
    /// One task per instance, named `payments`, `payments#2`, …
    instances: NamedTasks<anyhow::Result<()>>,
}

impl Running {
    /// The first instance's base URL of each started service, by name.
    pub fn first_urls(&self) -> BTreeMap<String, String> {
        self.urls
            .iter()
            .filter_map(|(service, urls)| Some((service.to_string(), urls.first()?.clone())))
            .collect()
    }

    /// Every instance's base URL of each started service, by name.
    pub fn replica_urls(&self) -> BTreeMap<String, Vec<String>> {
        self.urls
            .iter()
            .map(|(service, urls)| (service.to_string(), urls.clone()))
            .collect()
    }

    /// Waits until every service has stopped (after the shutdown fired). Cancel-safe: after
    /// a timeout, [`Running::still_running`] names the instances that have not stopped.
    ///
    /// # Errors
    /// The first service that stopped with an error, or panicked.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some((instance, joined)) = self.instances.join_next().await {
            let result =
                joined.unwrap_or_else(|panic| Err(anyhow::anyhow!("it panicked: {panic}")));
            if let Err(error) = result {
                first_error.get_or_insert(error.context(format!("{instance} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The instances (`payments`, `payments#2`, …) that have not stopped.
    pub fn still_running(&self) -> Vec<String> {
        self.instances.running()
    }
}

/// Declares the whole topology (so no event is published before the queues that want it
/// exist), then builds and starts `services` (all when empty), one instance each.
///
/// # Errors
/// When the broker is unreachable, or a service cannot be built; nothing keeps running then.
pub async fn start(
    config: &SystemConfig,
    services: &[ServiceName],
    shutdown: Shutdown,
) -> anyhow::Result<Running> {
    start_replicas(config, services, 1, shutdown).await
}

/// As [`start`], with `replicas` instances of each service: each its own pool, consumer,
/// relay and port, all on the service's one database and queue, as separate processes would.
///
/// # Errors
/// As [`start`].
pub async fn start_replicas(
    config: &SystemConfig,
    services: &[ServiceName],
    replicas: usize,
    shutdown: Shutdown,
) -> anyhow::Result<Running> {
    anyhow::ensure!(
        replicas >= 1,
        "at least one replica of each service is needed"
    );
    // users first: the others check tokens against the keys it publishes.
    let chosen: Vec<ServiceName> = ServiceName::all()
        .filter(|service| services.is_empty() || services.contains(service))
        .collect();
    let connection = config.amqp.connect().await?;
    crate::all_topology(&config.names)?
        .declare(&connection)
        .await?;
    let _ = connection.close(200, "topology declared".into()).await;
    let host = if config.listen_addr.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        config.listen_addr.to_string()
    };
    let mut users_url = config.users_url.clone();
    let mut built = Vec::new();
    for replica in 0..replicas {
        for service in &chosen {
            let build = service.declaration().build;
            let runner = build(config.instance(*service, replica, &users_url)).await?;
            if *service == ServiceName::USERS && replica == 0 {
                users_url = format!("http://{host}:{}", runner.port());
            }
            built.push((*service, runner));
        }
    }
    let mut urls: BTreeMap<ServiceName, Vec<String>> = BTreeMap::new();
    let mut instances = NamedTasks::default();
    for (service, runner) in built {
        let url = format!("http://{host}:{}", runner.port());
        let replicas = urls.entry(service).or_default();
        replicas.push(url);
        let instance = match replicas.len() {
            1 => service.to_string(),
            nth => format!("{service}#{nth}"),
        };
        instances.spawn(instance, runner.run(shutdown.clone()));
    }
    Ok(Running { urls, instances })
}
