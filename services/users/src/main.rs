//! `users-service`: the users service as its own process.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::telemetry::init("users-service", "info,lapin=warn");
    let outcome = async {
        let config =
            platform::ServiceConfig::from_env(users_service::SERVICE, users_service::DEFAULT_PORT)?;
        let shutdown = conveyor::Shutdown::from_future(conveyor::shutdown::signal());
        users_service::run(config, shutdown).await
    };
    match outcome.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "users-service failed.");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
