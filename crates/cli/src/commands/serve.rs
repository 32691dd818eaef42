//! `conveyor serve all|<service>…`: services (and the gateway and the operators' console) in
//! this process, the same code the service binaries run.

use clap::Args;
use conveyor::Shutdown;
use system::ServiceName;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// `all` (every service, the gateway and the console), or services by name, `gateway`
    /// and `console`. The gateway finds services not served here at <SERVICE>_URL; the
    /// console listens on CONSOLE_PORT (default 8090; see `conveyor console --help`).
    #[arg(required = true, value_parser = serve_choice())]
    services: Vec<String>,
}

/// `all`, the roster's services, `gateway` and `console`.
fn serve_choice() -> clap::builder::PossibleValuesParser {
    let services = ServiceName::all().map(ServiceName::as_str);
    let choices = std::iter::once("all")
        .chain(services)
        .chain(["gateway", "console"]);
    clap::builder::PossibleValuesParser::new(choices)
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = system::SystemConfig::from_env()?;
    let all = args.services.iter().any(|service| service == "all");
    let gateway = all || args.services.iter().any(|service| service == "gateway");
    let console = all || args.services.iter().any(|service| service == "console");
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
        .filter(|service| !["all", "gateway", "console"].contains(&service.as_str()))
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
        Some(tokio::spawn(gateway.run(shutdown.clone())))
    } else {
        None
    };
    let console = if console {
        let mut settings = operator_console::ConsoleSettings::from_env()?;
        // The services started here, where they listen now.
        let started = running
            .as_ref()
            .map(system::Running::first_urls)
            .unwrap_or_default();
        if let Some(users) = started.get("users") {
            settings.users_url.clone_from(users);
        }
        settings.service_urls.extend(started);
        let console = operator_console::Console::bind(settings).await?;
        eprintln!("{:<10} http://127.0.0.1:{}/", "console", console.port());
        Some(tokio::spawn(console.run(shutdown.clone())))
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
    if let Some(console) = console {
        console.await??;
    }
    Ok(())
}
