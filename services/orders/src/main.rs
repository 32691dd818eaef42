//! `orders-service`: the orders service as its own process.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(&orders_service::ABOUT, |shutdown| async move {
        let config = platform::ServiceConfig::from_env(
            orders_service::SERVICE,
            orders_service::DEFAULT_PORT,
        )?;
        let settings = orders_service::Settings::from_env()?;
        orders_service::run(config, settings, shutdown).await
    })
    .await
}
