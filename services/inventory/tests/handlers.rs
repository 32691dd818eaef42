//! The inventory service's handlers on a database of their own, without a broker: each step
//! of its part of the order saga (reserve, reject, release), and the deliveries a broker can
//! make of them twice, late, out of order or broken.

use anyhow::Context;
use conveyor::testing::{Handling, Harness};
use conveyor::{DeadLetterKind, Envelope, Event, Names};
use conveyor_testkit::TestDatabase;
use events_schema::inventory::{
    InventoryRejectedV1, InventoryReleasedV1, InventoryReservedV1, Item, RejectReason,
};
use events_schema::orders::{CancelReason, OrderCancelledV1, OrderCreatedV1, PricedItem};
use serde_json::json;
use sqlx::types::Json;
use uuid::Uuid;

/// The price of every product here, and so of every order line.
const UNIT_PRICE_CENTS: i64 = 1250;

/// The service's consumer on a fresh, migrated database. Keep the first of the pair for the
/// whole test: dropping it drops the database.
async fn harness() -> anyhow::Result<(TestDatabase, Harness)> {
    let database = TestDatabase::migrated(&inventory_service::MIGRATOR).await;
    let consumer = inventory_service::consumer(&Names::default())?;
    let harness = Harness::new(consumer, database.pool()).await?;
    Ok((database, harness))
}

/// A product with `stock` units, as `POST /products` inserts it (version 1, nothing
/// reserved). Its `product.created` is left out: no handler of this service reads it.
async fn add_product(harness: &Harness, sku: &str, stock: i32) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO products (sku, name, price_cents, currency, stock, version)
         VALUES ($1, $2, $3, 'EUR', $4, 1)",
    )
    .bind(sku)
    .bind(format!("Product {sku}"))
    .bind(UNIT_PRICE_CENTS)
    .bind(stock)
    .execute(harness.pool())
    .await?;
    Ok(())
}

/// A product's `(stock, reserved)`.
async fn stock_of(harness: &Harness, sku: &str) -> anyhow::Result<(i32, i32)> {
    let row = sqlx::query_as("SELECT stock, reserved FROM products WHERE sku = $1")
        .bind(sku)
        .fetch_one(harness.pool())
        .await?;
    Ok(row)
}

/// The order's reservation row, `(status, items)`, if the service acted on the order.
async fn reservation_of(
    harness: &Harness,
    order_id: Uuid,
) -> anyhow::Result<Option<(String, Vec<Item>)>> {
    let row: Option<(String, Json<Vec<Item>>)> =
        sqlx::query_as("SELECT status, items FROM reservations WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(harness.pool())
            .await?;
    Ok(row.map(|(status, Json(items))| (status, items)))
}

async fn reservation_count(harness: &Harness) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(harness.pool())
        .await?)
}

/// Every event the service ever emitted (no relay runs here, so none leaves the outbox).
async fn outbox_count(harness: &Harness) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM conveyor.outbox")
        .fetch_one(harness.pool())
        .await?)
}

/// Whether the compensation guard remembers the order as cancelled.
async fn remembered_cancelled(harness: &Harness, order_id: Uuid) -> anyhow::Result<bool> {
    let remembered =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)")
            .bind(order_id)
            .fetch_one(harness.pool())
            .await?;
    Ok(remembered)
}

/// An order of `lines`, `(sku, quantity)` each, at [`UNIT_PRICE_CENTS`] a unit.
fn order_of(lines: &[(&str, i32)]) -> OrderCreatedV1 {
    let items: Vec<PricedItem> = lines
        .iter()
        .map(|&(sku, quantity)| PricedItem {
            sku: sku.to_owned(),
            quantity,
            unit_price_cents: UNIT_PRICE_CENTS,
        })
        .collect();
    OrderCreatedV1 {
        order_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        total_cents: items
            .iter()
            .map(|item| i64::from(item.quantity) * item.unit_price_cents)
            .sum(),
        items,
        currency: "EUR".to_owned(),
    }
}

/// The orders service's cancellation of `order`, naming its products as today's producer does.
fn cancellation(order: &OrderCreatedV1, reason: CancelReason) -> OrderCancelledV1 {
    OrderCancelledV1 {
        order_id: order.order_id,
        user_id: order.user_id,
        reason,
        detail: None,
        skus: order.items.iter().map(|item| item.sku.clone()).collect(),
    }
}

/// `event` as the orders service publishes it: about the order, in the order's own flow
/// (its correlation id is the order id, unlike the event's own id).
fn from_orders<E: Event>(harness: &Harness, order_id: Uuid, event: &E) -> Envelope {
    harness
        .envelope("orders", order_id, event)
        .with_correlation_id(order_id)
}

fn item(sku: &str, quantity: i32) -> Item {
    Item {
        sku: sku.to_owned(),
        quantity,
    }
}

#[tokio::test]
async fn an_order_within_stock_is_reserved_whole_and_its_units_set_aside() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    add_product(&harness, "TEA-GREEN", 5).await?;
    let order = order_of(&[("TEA-GREEN", 3), ("MUG-BLUE", 1), ("MUG-BLUE", 1)]);
    let created = from_orders(&harness, order.order_id, &order);

    let emitted = harness.deliver(&created).await?.handled()?;

    let reserved = emitted.one::<InventoryReservedV1>()?;
    assert_eq!(reserved.order_id, order.order_id);
    // One line per product, quantities added up, sorted by sku.
    assert_eq!(reserved.items, [item("MUG-BLUE", 2), item("TEA-GREEN", 3)]);
    // The payer and total travel on, so payments can charge without a copy of orders.
    assert_eq!(reserved.user_id, Some(order.user_id));
    assert_eq!(reserved.total_cents, Some(5 * UNIT_PRICE_CENTS));
    assert_eq!(reserved.currency.as_deref(), Some("EUR"));
    emitted.answer_to(&created)?;
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 2));
    assert_eq!(stock_of(&harness, "TEA-GREEN").await?, (5, 3));
    assert_eq!(
        reservation_of(&harness, order.order_id).await?,
        Some((
            "reserved".to_owned(),
            vec![item("MUG-BLUE", 2), item("TEA-GREEN", 3)]
        ))
    );
    Ok(())
}

#[tokio::test]
async fn an_order_short_of_one_product_is_rejected_and_takes_nothing() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 1).await?;
    add_product(&harness, "TEA-GREEN", 5).await?;
    let order = order_of(&[("MUG-BLUE", 2), ("TEA-GREEN", 1)]);
    let created = from_orders(&harness, order.order_id, &order);

    let emitted = harness.deliver(&created).await?.handled()?;

    let rejected = emitted.one::<InventoryRejectedV1>()?;
    assert_eq!(rejected.order_id, order.order_id);
    assert_eq!(rejected.reason, RejectReason::InsufficientStock);
    assert_eq!(rejected.skus, ["MUG-BLUE"]);
    emitted.answer_to(&created)?;
    // All or nothing: the product that had enough is not taken either.
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (1, 0));
    assert_eq!(stock_of(&harness, "TEA-GREEN").await?, (5, 0));
    let (status, _) = reservation_of(&harness, order.order_id)
        .await?
        .context("the rejection is recorded")?;
    assert_eq!(status, "rejected");
    Ok(())
}

#[tokio::test]
async fn an_order_naming_an_unknown_product_is_rejected_as_unknown() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 5).await?;
    let order = order_of(&[("MUG-BLUE", 1), ("LAMP-RED", 1)]);

    let emitted = harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;

    let rejected = emitted.one::<InventoryRejectedV1>()?;
    assert_eq!(rejected.reason, RejectReason::UnknownSku);
    assert_eq!(rejected.skus, ["LAMP-RED"]);
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (5, 0));
    Ok(())
}

#[tokio::test]
async fn two_orders_for_the_last_units_reserve_for_the_first_and_reject_the_second()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 3).await?;
    let (first, second) = (order_of(&[("MUG-BLUE", 2)]), order_of(&[("MUG-BLUE", 2)]));
    let first_created = from_orders(&harness, first.order_id, &first);
    let second_created = from_orders(&harness, second.order_id, &second);

    // One batch, one transaction: the two are still decided one after the other.
    let handlings = harness
        .deliver_batch(&[first_created.clone(), second_created.clone()])
        .await?;

    let [first_handling, second_handling] = <[Handling; 2]>::try_from(handlings)
        .map_err(|all| anyhow::anyhow!("expected two handlings, got {all:?}"))?;
    let (reserved, rejected) = (first_handling.handled()?, second_handling.handled()?);
    assert_eq!(
        reserved.one::<InventoryReservedV1>()?.order_id,
        first.order_id
    );
    reserved.answer_to(&first_created)?;
    let refusal = rejected.one::<InventoryRejectedV1>()?;
    assert_eq!(refusal.order_id, second.order_id);
    assert_eq!(refusal.reason, RejectReason::InsufficientStock);
    rejected.answer_to(&second_created)?;
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (3, 2));
    Ok(())
}

#[tokio::test]
async fn a_reserved_order_is_released_once_when_cancelled() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 4)]);
    harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;
    let cancelled = from_orders(
        &harness,
        order.order_id,
        &cancellation(&order, CancelReason::CustomerCancelled),
    );
    // A second cancellation of the same order, a new event: the deadline passing as well.
    let cancelled_again = from_orders(
        &harness,
        order.order_id,
        &cancellation(&order, CancelReason::DeadlinePassed),
    );

    let emitted = harness.deliver(&cancelled).await?.handled()?;
    let emitted_again = harness.deliver(&cancelled_again).await?.handled()?;

    let released = emitted.one::<InventoryReleasedV1>()?;
    assert_eq!(released.order_id, order.order_id);
    assert_eq!(released.items, [item("MUG-BLUE", 4)]);
    emitted.answer_to(&cancelled)?;
    assert!(emitted_again.is_empty(), "{:?}", emitted_again.types());
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 0));
    let (status, _) = reservation_of(&harness, order.order_id)
        .await?
        .context("the reservation row stays")?;
    assert_eq!(status, "released");
    Ok(())
}

#[tokio::test]
async fn a_cancellation_without_its_skus_still_releases_the_reservation() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 4)]);
    harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;
    // As producers that predate the field send it.
    let legacy = OrderCancelledV1 {
        skus: Vec::new(),
        ..cancellation(&order, CancelReason::CustomerCancelled)
    };

    let emitted = harness
        .deliver(&from_orders(&harness, order.order_id, &legacy))
        .await?
        .handled()?;

    assert_eq!(
        emitted.one::<InventoryReleasedV1>()?.items,
        [item("MUG-BLUE", 4)]
    );
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 0));
    Ok(())
}

#[tokio::test]
async fn a_rejected_order_has_nothing_to_release_when_cancelled() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 1).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;
    let cancelled = cancellation(&order, CancelReason::InventoryRejected);

    let emitted = harness
        .deliver(&from_orders(&harness, order.order_id, &cancelled))
        .await?
        .handled()?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (1, 0));
    let (status, _) = reservation_of(&harness, order.order_id)
        .await?
        .context("the rejection stays recorded")?;
    assert_eq!(status, "rejected");
    Ok(())
}

#[tokio::test]
async fn the_same_order_created_delivered_twice_reserves_once() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    let created = from_orders(&harness, order.order_id, &order);
    harness.deliver(&created).await?.handled()?;
    let emitted_before = outbox_count(&harness).await?;

    let again = harness.deliver(&created).await?;

    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 2));
    assert_eq!(reservation_count(&harness).await?, 1);
    assert_eq!(outbox_count(&harness).await?, emitted_before);
    Ok(())
}

#[tokio::test]
async fn two_copies_of_one_order_created_in_one_batch_reserve_once() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    let created = from_orders(&harness, order.order_id, &order);

    let handlings = harness
        .deliver_batch(&[created.clone(), created.clone()])
        .await?;

    let [first, second] = <[Handling; 2]>::try_from(handlings)
        .map_err(|all| anyhow::anyhow!("expected two handlings, got {all:?}"))?;
    assert!(second.is_duplicate(), "{second:?}");
    first.handled()?.answer_to(&created)?;
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 2));
    assert_eq!(reservation_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_redelivery_after_the_commit_is_a_duplicate_even_for_a_restarted_consumer()
-> anyhow::Result<()> {
    let (database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    let created = from_orders(&harness, order.order_id, &order);
    harness.deliver(&created).await?.handled()?;

    // The process died after its commit, before the ack: the broker hands the delivery to
    // the next process, which knows it only from the inbox in the database.
    let consumer = inventory_service::consumer(&Names::default())?;
    let mut restarted = Harness::new(consumer, database.pool()).await?;
    let redelivered = restarted.deliver(&created).await?;

    assert!(redelivered.is_duplicate(), "{redelivered:?}");
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 2));
    assert_eq!(reservation_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_order_created_published_again_under_a_new_id_reserves_nothing_more()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;

    // A new envelope id gets past the inbox: the reservation row is what stops it.
    let emitted = harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 2));
    assert_eq!(reservation_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_order_cancelled_before_it_is_created_is_never_reserved() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    let cancelled = cancellation(&order, CancelReason::CustomerCancelled);

    let on_cancel = harness
        .deliver(&from_orders(&harness, order.order_id, &cancelled))
        .await?
        .handled()?;
    let on_create = harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;

    // Nothing to release yet; the guard remembers the cancellation, so the late order is
    // neither reserved nor rejected.
    assert!(on_cancel.is_empty(), "{:?}", on_cancel.types());
    assert!(on_create.is_empty(), "{:?}", on_create.types());
    assert!(remembered_cancelled(&harness, order.order_id).await?);
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 0));
    assert_eq!(reservation_of(&harness, order.order_id).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_late_copy_of_order_created_after_the_release_reserves_nothing() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order = order_of(&[("MUG-BLUE", 2)]);
    harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;
    let cancelled = cancellation(&order, CancelReason::CustomerCancelled);
    harness
        .deliver(&from_orders(&harness, order.order_id, &cancelled))
        .await?
        .handled()?;

    let emitted = harness
        .deliver(&from_orders(&harness, order.order_id, &order))
        .await?
        .handled()?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 0));
    let (status, _) = reservation_of(&harness, order.order_id)
        .await?
        .context("the reservation row stays")?;
    assert_eq!(status, "released");
    Ok(())
}

#[tokio::test]
async fn an_order_created_breaking_its_schema_is_dead_lettered_and_reserves_nothing()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    add_product(&harness, "MUG-BLUE", 10).await?;
    let order_id = Uuid::now_v7();
    let data = json!({
        "order_id": order_id,
        "user_id": Uuid::now_v7(),
        "items": [{"sku": "MUG-BLUE", "quantity": 0, "unit_price_cents": UNIT_PRICE_CENTS}],
        "total_cents": 0,
        "currency": "EUR",
    });
    let poison =
        Envelope::new("orders", OrderCreatedV1::TYPE, data).with_subject(order_id.to_string());

    let handling = harness.deliver(&poison).await?;

    assert_eq!(
        handling.dead_letter_kind(),
        Some(DeadLetterKind::Schema),
        "{handling:?}"
    );
    // The dead letter names the field at fault, for whoever reads the dead-letter queue.
    assert!(
        format!("{handling:?}").contains("/items/0/quantity"),
        "{handling:?}"
    );
    assert_eq!(stock_of(&harness, "MUG-BLUE").await?, (10, 0));
    assert_eq!(reservation_count(&harness).await?, 0);
    Ok(())
}
