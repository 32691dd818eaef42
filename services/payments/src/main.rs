//! `payments-service`: the payments service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::telemetry::init("payments-service", "info,lapin=warn");
    let outcome = async {
        let config = platform::ServiceConfig::from_env(
            payments_service::SERVICE,
            payments_service::DEFAULT_PORT,
        )?;
        let shutdown = conveyor::Shutdown::from_future(conveyor::shutdown::signal());
        payments_service::run(config, shutdown).await
    };
    match outcome.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "payments-service failed.");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
