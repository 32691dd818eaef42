//! `inventory-service`: the inventory service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::telemetry::init("inventory-service", "info,lapin=warn");
    let outcome = async {
        let config = platform::ServiceConfig::from_env(
            inventory_service::SERVICE,
            inventory_service::DEFAULT_PORT,
        )?;
        let shutdown = conveyor::Shutdown::from_future(conveyor::shutdown::signal());
        inventory_service::run(config, shutdown).await
    };
    match outcome.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "inventory-service failed.");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
