//! `payments-service`: the payments service as its own process.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::run_binary(&payments_service::ABOUT, |shutdown| async move {
        let config = platform::ServiceConfig::from_env(
            payments_service::SERVICE,
            payments_service::DEFAULT_PORT,
        )?;
        payments_service::run(config, shutdown).await
    })
    .await
}
