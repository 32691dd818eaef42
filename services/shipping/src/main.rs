//! `shipping-service`: the shipping service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::telemetry::init("shipping-service", "info,lapin=warn");
    let outcome = async {
        let config = platform::ServiceConfig::from_env(
            shipping_service::SERVICE,
            shipping_service::DEFAULT_PORT,
        )?;
        let settings = shipping_service::Settings::from_env()?;
        let shutdown = conveyor::Shutdown::from_future(conveyor::shutdown::signal());
        shipping_service::run(config, settings, shutdown).await
    };
    match outcome.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "shipping-service failed.");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
