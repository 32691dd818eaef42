//! `users-service`: the users service as its own process.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(&users_service::ABOUT, |shutdown| async move {
        let config =
            platform::ServiceConfig::from_env(users_service::SERVICE, users_service::DEFAULT_PORT)?;
        let settings = users_service::Settings::from_env()?;
        users_service::run(config, settings, shutdown).await
    })
    .await
}
