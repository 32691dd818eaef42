//! The book's handler test: the real handler on a database of its own, no broker.

// ANCHOR: test
use conveyor::testing::Harness;
use conveyor_testkit::TestDatabase;
use first_handler_example::{MIGRATOR, OrderCreated, StockReserved, consumer};
use uuid::Uuid;

#[tokio::test]
async fn an_order_reserves_its_stock_once() -> anyhow::Result<()> {
    let database = TestDatabase::migrated(&MIGRATOR).await; // dropped when the test ends
    sqlx::query("INSERT INTO stock VALUES ('ABC-1', 5)")
        .execute(&database.pool())
        .await?;
    let mut harness = Harness::new(consumer()?, database.pool()).await?;

    let order_id = Uuid::now_v7();
    let created = OrderCreated {
        order_id,
        sku: "ABC-1".into(),
        quantity: 2,
    };
    let event = harness.envelope("orders", order_id, &created);
    let emitted = harness.deliver(&event).await?.handled()?;
    let again = harness.deliver(&event).await?;

    assert_eq!(emitted.one::<StockReserved>()?.order_id, order_id);
    assert!(
        again.is_duplicate(),
        "the inbox keeps a redelivery from running twice"
    );
    let available: i32 = sqlx::query_scalar("SELECT available FROM stock")
        .fetch_one(&database.pool())
        .await?;
    assert_eq!(available, 3);
    Ok(())
}
// ANCHOR_END: test

/// Stock that would go below zero breaks the table's check: a constraint violation is
/// permanent, so the event is dead-lettered at once rather than retried.
#[tokio::test]
async fn an_order_for_more_than_the_stock_is_dead_lettered_as_permanent() -> anyhow::Result<()> {
    let database = TestDatabase::migrated(&MIGRATOR).await;
    sqlx::query("INSERT INTO stock VALUES ('ABC-1', 1)")
        .execute(&database.pool())
        .await?;
    let mut harness = Harness::new(consumer()?, database.pool()).await?;

    let order_id = Uuid::now_v7();
    let created = OrderCreated {
        order_id,
        sku: "ABC-1".into(),
        quantity: 2,
    };
    let handling = harness
        .deliver(&harness.envelope("orders", order_id, &created))
        .await?;

    assert_eq!(
        handling.dead_letter_kind(),
        Some(conveyor::DeadLetterKind::Permanent),
        "{handling:?}"
    );
    let emitted = harness.take_emitted().await?;
    assert!(
        emitted.is_empty(),
        "nothing is emitted for a refused order: {emitted:?}"
    );
    Ok(())
}
