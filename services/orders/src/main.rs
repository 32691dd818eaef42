//! `orders-service`: the orders service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::telemetry::init("orders-service", "info,lapin=warn");
    let outcome = async {
        let config = platform::ServiceConfig::from_env(
            orders_service::SERVICE,
            orders_service::DEFAULT_PORT,
        )?;
        let settings = orders_service::Settings::from_env()?;
        let shutdown = conveyor::Shutdown::from_future(conveyor::shutdown::signal());
        orders_service::run(config, settings, shutdown).await
    };
    match outcome.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "orders-service failed.");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
