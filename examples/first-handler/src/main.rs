//! `first-handler-example`: the book's stock service as a process.

// ANCHOR: main
use conveyor::{AmqpConfig, Names, OutboxRelay, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1/stock".to_owned());
    let pool = sqlx::PgPool::connect(&url).await?;
    first_handler_example::MIGRATOR.run(&pool).await?;
    let amqp = AmqpConfig::from_env("stock");
    let shutdown = Shutdown::from_future(conveyor::shutdown::signal());
    let consumer = first_handler_example::consumer()?;
    let relay = OutboxRelay::new(pool.clone(), amqp.clone(), Names::default());
    tokio::join!(
        consumer.run(amqp, pool, shutdown.clone()),
        relay.run(shutdown)
    );
    Ok(())
}
// ANCHOR_END: main
