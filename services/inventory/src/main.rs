//! `inventory-service`: the inventory service as its own process.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(&inventory_service::ABOUT, |shutdown| async move {
        let config = platform::ServiceConfig::from_env(
            inventory_service::SERVICE,
            inventory_service::DEFAULT_PORT,
        )?;
        inventory_service::run(config, shutdown).await
    })
    .await
}
