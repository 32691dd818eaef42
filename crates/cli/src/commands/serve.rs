//! `conveyor serve all|<service>…`: services (and the gateway) in this process, the same
//! code the service binaries run.

use clap::Args;
use conveyor::Shutdown;
use system::ServiceName;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// `all` (every service and the gateway), or services by name, and `gateway`. The
    /// gateway finds services not served here at <SERVICE>_URL.
    #[arg(required = true, value_parser = serve_choice())]
    services: Vec<String>,
}

/// `all`, the roster's services and `gateway`.
fn serve_choice() -> clap::builder::PossibleValuesParser {
    let services = ServiceName::all().map(ServiceName::as_str);
    let choices = std::iter::once("all").chain(services).chain(["gateway"]);
    clap::builder::PossibleValuesParser::new(choices)
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = system::SystemConfig::from_env()?;
    let all = args.services.iter().any(|service| service == "all");
    let gateway = all || args.services.iter().any(|service| service == "gateway");
    let users_here = all || args.services.iter().any(|service| service == "users");
    // Users trusts the addresses a gateway forwards only with their shared secret; served
    // together here, they share one of this run's own unless the environment names one.
    let forward_secret = if gateway && users_here {
        Some(config.share_forward_secret()?)
    } else {
        None
    };
    let chosen: Vec<ServiceName> = args
        .services
        .iter()
        .filter(|service| !["all", "gateway"].contains(&service.as_str()))
        .map(|service| ServiceName::parse(service))
        .collect::<anyhow::Result<_>>()?;
    let shutdown = Shutdown::from_future(conveyor::shutdown::signal());
    let running = if all || !chosen.is_empty() {
        Some(system::start(&config, &chosen, shutdown.clone()).await?)
    } else {
        None
    };
    let mut settings = system::gateway_settings()?;
    for (service, url) in running.iter().flat_map(system::Running::first_urls) {
        eprintln!("{service:<10} {url}");
        settings.urls.insert(service, url);
    }
    let gateway = if gateway {
        let gateway = match &forward_secret {
            Some(secret) => {
                api_gateway::Gateway::bind_with_forward_secret(settings, Some(secret)).await?
            }
            None => api_gateway::Gateway::bind(settings).await?,
        };
        eprintln!("{:<10} http://127.0.0.1:{}/api/", "gateway", gateway.port());
        Some(tokio::spawn(gateway.run(shutdown)))
    } else {
        None
    };
    eprintln!("Serving; Ctrl-C stops.");
    if let Some(mut running) = running {
        running.wait().await?;
    }
    if let Some(gateway) = gateway {
        gateway.await??;
    }
    Ok(())
}
