//! `conveyor serve all|<service>…`: services in this process, the same code the service
//! binaries run.

use clap::Args;
use conveyor::Shutdown;
use system::ServiceName;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// `all`, or service names: users, inventory, orders, payments, shipping.
    #[arg(required = true)]
    services: Vec<String>,
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = system::SystemConfig::from_env()?;
    let chosen: Vec<ServiceName> = if args.services.iter().any(|service| service == "all") {
        Vec::new()
    } else {
        args.services
            .iter()
            .map(|service| ServiceName::parse(service))
            .collect::<anyhow::Result<_>>()?
    };
    let shutdown = Shutdown::from_future(conveyor::shutdown::signal());
    let running = system::start(&config, &chosen, shutdown).await?;
    for (service, url) in running.first_urls() {
        eprintln!("{service:<10} {url}");
    }
    eprintln!("Serving; Ctrl-C stops.");
    running.wait().await
}
