//! `conveyor cache rebuild <service>`: a service started empty (or with a damaged copy)
//! rebuilds its cached copies of other services' data.

use std::collections::BTreeMap;

use clap::Subcommand;
use system::ServiceName;
use system::scenario::Api;

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCommand {
    /// Ask the sources of SERVICE's cached copies to publish their current
    /// state again; SERVICE's consumer fills what it lacks, and ignores what it has (versions
    /// are not newer). The sources are found at <SOURCE>_URL (default http://127.0.0.1:<port>).
    /// Needs an admin: CONVEYOR_TOKEN, or CONVEYOR_ADMIN_EMAIL and CONVEYOR_ADMIN_PASSWORD.
    Rebuild {
        /// A service that keeps cached copies.
        #[arg(value_parser = super::copy_keeper_choice())]
        service: String,
    },
}

pub(crate) async fn run(command: CacheCommand) -> anyhow::Result<()> {
    let CacheCommand::Rebuild { service } = command;
    let service = ServiceName::parse(&service)?;
    let urls: BTreeMap<String, String> = super::service_urls()
        .into_iter()
        .map(|(source, url)| (source.to_string(), url))
        .collect();
    let api = Api::new(&urls)?.as_operator_from_env().await?;
    let republished = system::caches::rebuild(&api, service).await?;
    for (source, count) in republished {
        println!("{source} republished {count} events for {service}'s copies.");
    }
    Ok(())
}
