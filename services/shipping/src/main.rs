//! `shipping-service`: the shipping service as its own process.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(&shipping_service::ABOUT, |shutdown| async move {
        let config = platform::ServiceConfig::from_env(
            shipping_service::SERVICE,
            shipping_service::DEFAULT_PORT,
        )?;
        let settings = shipping_service::Settings::from_env()?;
        shipping_service::run(config, settings, shutdown).await
    })
    .await
}
