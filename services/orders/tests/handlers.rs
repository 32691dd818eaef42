//! Orders' handlers on a database of their own, without a broker: the end of each order's
//! saga (`order.confirmed` on `shipment.scheduled`, `order.cancelled` with its reason on
//! `inventory.rejected`, `payment.declined` or `shipment.failed`), and the cached copies of
//! users and products that placing an order reads.
//!
//! Orders are placed over HTTP, so each test inserts its pending order as `place` does.
//! No handler here fails transiently on its own (only the database can), so there is no
//! retry-then-success case: see the shipping service's tests for one.

use anyhow::Context;
use chrono::{DateTime, Utc};
use conveyor::testing::{Emitted, Harness};
use conveyor::{DeadLetterKind, Envelope, Event, Outbox};
use conveyor_testkit::TestDatabase;
use events_schema::inventory::{InventoryRejectedV1, RejectReason};
use events_schema::orders::{
    CancelReason, OrderCancelledV1, OrderConfirmedV1, OrderCreatedV1, OrderDeadlinePassedV1,
    PricedItem,
};
use events_schema::payments::{DeclineReason, PaymentDeclinedV1};
use events_schema::products::{ProductCreatedV1, ProductUpdatedV1};
use events_schema::shipping::{ShipmentFailedV1, ShipmentFailure, ShipmentScheduledV1};
use events_schema::users::{Address, UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Orders' real consumer on a freshly migrated database. Keep the database alive for the
/// whole test.
async fn harness() -> (TestDatabase, Harness) {
    let database = TestDatabase::migrated(&orders_service::MIGRATOR).await;
    let consumer =
        orders_service::consumer(&conveyor::Names::default()).expect("orders' consumer builds");
    let harness = Harness::new(consumer, database.pool())
        .await
        .expect("the harness installs the inbox and outbox");
    (database, harness)
}

/// An order of two lines, priced, as `POST /orders` announces it.
fn new_order() -> OrderCreatedV1 {
    let line = |sku: &str, quantity, unit_price_cents| PricedItem {
        sku: sku.into(),
        quantity,
        unit_price_cents,
    };
    OrderCreatedV1 {
        order_id: Uuid::now_v7(),
        user_id: Uuid::now_v7(),
        items: vec![line("TEA-GREEN", 3, 799), line("MUG-BLUE", 1, 1200)],
        total_cents: 3597,
        currency: "EUR".into(),
    }
}

/// Inserts `order` pending, as `place` (src/http.rs) does, without an Idempotency-Key and
/// with the default saga timeout of two minutes.
async fn place(harness: &Harness, order: &OrderCreatedV1) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, items, total_cents, currency, deadline_at)
         VALUES ($1, $2, 'pending', $3, $4, $5, clock_timestamp() + make_interval(secs => $6))",
    )
    .bind(order.order_id)
    .bind(order.user_id)
    .bind(sqlx::types::Json(&order.items))
    .bind(order.total_cents)
    .bind(&order.currency)
    .bind(120.0_f64)
    .execute(harness.pool())
    .await?;
    Ok(())
}

/// A new order, placed and pending.
async fn placed(harness: &Harness) -> anyhow::Result<OrderCreatedV1> {
    let order = new_order();
    place(harness, &order).await?;
    Ok(order)
}

fn address() -> Address {
    Address {
        line1: "12 Rue de la Paix".into(),
        city: "Paris".into(),
        postal_code: "75002".into(),
        country: "FR".into(),
    }
}

fn scheduled(order: &OrderCreatedV1) -> ShipmentScheduledV1 {
    ShipmentScheduledV1 {
        order_id: order.order_id,
        shipment_id: Uuid::now_v7(),
        user_id: order.user_id,
        address: address(),
    }
}

fn rejected(order: &OrderCreatedV1) -> InventoryRejectedV1 {
    InventoryRejectedV1 {
        order_id: order.order_id,
        reason: RejectReason::InsufficientStock,
        skus: vec!["TEA-GREEN".into()],
    }
}

fn declined(order: &OrderCreatedV1) -> PaymentDeclinedV1 {
    PaymentDeclinedV1 {
        order_id: order.order_id,
        user_id: order.user_id,
        amount_cents: order.total_cents,
        currency: order.currency.clone(),
        reason: DeclineReason::CreditLimitExceeded,
    }
}

fn failed(order: &OrderCreatedV1) -> ShipmentFailedV1 {
    ShipmentFailedV1 {
        order_id: order.order_id,
        reason: ShipmentFailure::UndeliverableCountry,
        country: Some("JP".into()),
    }
}

/// The deadline orders schedules for `order`, with the default saga timeout.
fn deadline_passed(order: &OrderCreatedV1) -> OrderDeadlinePassedV1 {
    OrderDeadlinePassedV1 {
        order_id: order.order_id,
        timeout_ms: 120_000,
    }
}

/// Schedules `order`'s deadline as `POST /orders` does.
async fn schedule_deadline(harness: &Harness, order: &OrderCreatedV1) -> anyhow::Result<()> {
    let timer = answer(harness, "orders", order, &deadline_passed(order));
    let mut tx = harness.pool().begin().await?;
    let timeout = std::time::Duration::from_secs(120);
    Outbox::new().add_after(&mut tx, &timer, timeout).await?;
    tx.commit().await?;
    Ok(())
}

/// How many deadlines of `order` wait in orders' schedule.
async fn deadlines_scheduled(pool: &PgPool, order: &OrderCreatedV1) -> anyhow::Result<i64> {
    let query = "SELECT count(*) FROM conveyor.scheduled
                 WHERE event_type = 'order.deadline-passed' AND subject = $1";
    let subject = order.order_id.to_string();
    Ok(sqlx::query_scalar(query)
        .bind(subject)
        .fetch_one(pool)
        .await?)
}

/// The `order.cancelled` orders announces for `order`.
fn cancellation(order: &OrderCreatedV1, reason: CancelReason, detail: &str) -> OrderCancelledV1 {
    OrderCancelledV1 {
        order_id: order.order_id,
        user_id: order.user_id,
        reason,
        detail: Some(detail.into()),
        // The order's products, each once, in order.
        skus: vec!["MUG-BLUE".into(), "TEA-GREEN".into()],
    }
}

/// An answer about `order` as the service `source` publishes it: about the order, in the
/// order's flow (orders starts each flow with the order id as its correlation id).
fn answer<E: Event>(
    harness: &Harness,
    source: &str,
    order: &OrderCreatedV1,
    event: &E,
) -> Envelope {
    harness
        .envelope(source, order.order_id, event)
        .with_correlation_id(order.order_id)
}

/// Delivers an answer about `order`, which must be handled; what it emitted.
async fn deliver_answer<E: Event>(
    harness: &mut Harness,
    source: &str,
    order: &OrderCreatedV1,
    event: &E,
) -> anyhow::Result<Emitted> {
    let delivered = answer(harness, source, order, event);
    Ok(harness.deliver(&delivered).await?.handled()?)
}

/// Delivers a users-service event about `user_id`, which must be handled; what it emitted.
async fn from_users<E: Event>(
    harness: &mut Harness,
    user_id: Uuid,
    event: &E,
) -> anyhow::Result<Emitted> {
    let delivered = harness.envelope("users", user_id, event);
    Ok(harness.deliver(&delivered).await?.handled()?)
}

/// The one product of these tests.
const SKU: &str = "TEA-GREEN";

/// Delivers an inventory event about [`SKU`], which must be handled; what it emitted.
async fn from_inventory<E: Event>(harness: &mut Harness, event: &E) -> anyhow::Result<Emitted> {
    let delivered = harness.envelope("inventory", SKU, event);
    Ok(harness.deliver(&delivered).await?.handled()?)
}

/// An order as `GET /orders/{id}` shows it, in part.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct OrderRow {
    status: String,
    reason: Option<String>,
    detail: Option<String>,
    finished_at: Option<DateTime<Utc>>,
}

async fn order_row(pool: &PgPool, order_id: Uuid) -> anyhow::Result<OrderRow> {
    let query = "SELECT status, reason, detail, finished_at FROM orders WHERE id = $1";
    Ok(sqlx::query_as(query).bind(order_id).fetch_one(pool).await?)
}

fn assert_cancelled(row: &OrderRow, reason: &str, detail: &str) {
    assert_eq!(row.status, "cancelled", "{row:?}");
    assert_eq!(row.reason.as_deref(), Some(reason), "{row:?}");
    assert_eq!(row.detail.as_deref(), Some(detail), "{row:?}");
    assert!(row.finished_at.is_some(), "{row:?}");
}

/// Orders' copy of a user: (active, version).
async fn cached_user(pool: &PgPool, user_id: Uuid) -> anyhow::Result<(bool, i64)> {
    let query = "SELECT active, version FROM users_cache WHERE user_id = $1";
    Ok(sqlx::query_as(query).bind(user_id).fetch_one(pool).await?)
}

/// Orders' copy of a product: (price in cents, currency, version).
async fn cached_product(pool: &PgPool, sku: &str) -> anyhow::Result<(i64, String, i64)> {
    let query = "SELECT price_cents, currency, version FROM products_cache WHERE sku = $1";
    Ok(sqlx::query_as(query).bind(sku).fetch_one(pool).await?)
}

/// Every event in the outbox, relayed or not: all the service ever emitted.
async fn outbox_len(pool: &PgPool) -> anyhow::Result<i64> {
    let query = "SELECT count(*) FROM conveyor.outbox";
    Ok(sqlx::query_scalar(query).fetch_one(pool).await?)
}

fn user(version: i64) -> UserRegisteredV1 {
    UserRegisteredV1 {
        user_id: Uuid::now_v7(),
        email: "grace@example.com".into(),
        name: "Grace Hopper".into(),
        address: address(),
        credit_limit_cents: 100_000,
        currency: "EUR".into(),
        version,
    }
}

fn user_updated(user: &UserRegisteredV1, version: i64) -> UserUpdatedV1 {
    UserUpdatedV1 {
        user_id: user.user_id,
        email: user.email.clone(),
        name: user.name.clone(),
        address: user.address.clone(),
        credit_limit_cents: user.credit_limit_cents,
        currency: user.currency.clone(),
        version,
    }
}

fn user_deactivated(user: &UserRegisteredV1, version: i64) -> UserDeactivatedV1 {
    UserDeactivatedV1 {
        user_id: user.user_id,
        version,
    }
}

fn product_created(price_cents: i64) -> ProductCreatedV1 {
    ProductCreatedV1 {
        sku: SKU.into(),
        name: "Green tea, 100 g".into(),
        price_cents,
        currency: "EUR".into(),
        version: 1,
    }
}

fn product_updated(price_cents: i64, version: i64) -> ProductUpdatedV1 {
    ProductUpdatedV1 {
        sku: SKU.into(),
        name: "Green tea, 100 g".into(),
        price_cents,
        currency: "EUR".into(),
        version,
    }
}

// The saga's end: confirmed on the shipment, cancelled on any refusal.

#[tokio::test]
async fn a_scheduled_shipment_confirms_the_pending_order() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "shipping", &order, &scheduled(&order));

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let expected = OrderConfirmedV1 {
        order_id: order.order_id,
        user_id: order.user_id,
        total_cents: order.total_cents,
        currency: order.currency.clone(),
    };
    assert_eq!(emitted.one::<OrderConfirmedV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_eq!(row.status, "confirmed", "{row:?}");
    assert!(row.reason.is_none() && row.detail.is_none(), "{row:?}");
    assert!(row.finished_at.is_some(), "{row:?}");
    Ok(())
}

#[tokio::test]
async fn a_rejected_reservation_cancels_the_order_as_inventory_rejected() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "inventory", &order, &rejected(&order));

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let detail = "insufficient-stock: TEA-GREEN";
    let expected = cancellation(&order, CancelReason::InventoryRejected, detail);
    assert_eq!(emitted.one::<OrderCancelledV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_cancelled(&row, "inventory-rejected", detail);
    Ok(())
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order_as_payment_declined() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "payments", &order, &declined(&order));

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let detail = "credit-limit-exceeded: 3597 EUR";
    let expected = cancellation(&order, CancelReason::PaymentDeclined, detail);
    assert_eq!(emitted.one::<OrderCancelledV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_cancelled(&row, "payment-declined", detail);
    Ok(())
}

#[tokio::test]
async fn a_failed_shipment_cancels_the_order_as_shipment_failed() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "shipping", &order, &failed(&order));

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let detail = "undeliverable-country: JP";
    let expected = cancellation(&order, CancelReason::ShipmentFailed, detail);
    assert_eq!(emitted.one::<OrderCancelledV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_cancelled(&row, "shipment-failed", detail);
    Ok(())
}

#[tokio::test]
async fn a_passed_deadline_cancels_the_pending_order_as_deadline_passed() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "orders", &order, &deadline_passed(&order));

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let detail = "no answer within 120s";
    let expected = cancellation(&order, CancelReason::DeadlinePassed, detail);
    assert_eq!(emitted.one::<OrderCancelledV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_cancelled(&row, "deadline-passed", detail);
    Ok(())
}

#[tokio::test]
async fn an_order_that_ends_takes_back_its_deadline() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let confirmed = placed(&harness).await?;
    schedule_deadline(&harness, &confirmed).await?;
    let cancelled = placed(&harness).await?;
    schedule_deadline(&harness, &cancelled).await?;

    deliver_answer(&mut harness, "shipping", &confirmed, &scheduled(&confirmed)).await?;
    deliver_answer(&mut harness, "payments", &cancelled, &declined(&cancelled)).await?;

    assert_eq!(deadlines_scheduled(harness.pool(), &confirmed).await?, 0);
    assert_eq!(deadlines_scheduled(harness.pool(), &cancelled).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_rejection_naming_many_skus_cancels_with_a_detail_the_contract_accepts()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let mut rejection = rejected(&order);
    rejection.skus = (0..150).map(|n| format!("WAREHOUSE-SKU-{n:03}")).collect();

    let emitted = deliver_answer(&mut harness, "inventory", &order, &rejection).await?;

    // `order.cancelled` allows 500 characters of detail: the list is cut, not the event.
    let cancelled = emitted.one::<OrderCancelledV1>()?;
    let detail = cancelled.detail.context("a cancellation says why")?;
    assert!(detail.chars().count() <= 500, "{detail}");
    let first = "insufficient-stock: WAREHOUSE-SKU-000, ";
    assert!(detail.starts_with(first), "{detail}");
    assert!(detail.ends_with(" more)"), "{detail}");
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_cancelled(&row, "inventory-rejected", &detail);
    Ok(())
}

// The same answer again.

#[tokio::test]
async fn a_shipment_redelivered_after_its_commit_is_a_duplicate_and_changes_nothing()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "shipping", &order, &scheduled(&order));
    harness.deliver(&delivered).await?.handled()?;
    let confirmed = order_row(harness.pool(), order.order_id).await?;

    // The broker hands the committed delivery back, as after a lost ack.
    let again = harness.deliver(&delivered).await?;

    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(order_row(harness.pool(), order.order_id).await?, confirmed);
    assert_eq!(outbox_len(harness.pool()).await?, 1);
    Ok(())
}

#[tokio::test]
async fn two_copies_of_one_declined_payment_in_one_batch_cancel_the_order_once()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let delivered = answer(&harness, "payments", &order, &declined(&order));

    let copies = [delivered.clone(), delivered.clone()];
    let mut handled = harness.deliver_batch(&copies).await?;

    assert!(handled[1].is_duplicate(), "{:?}", handled[1]);
    let cancelled = handled.remove(0).handled()?.one::<OrderCancelledV1>()?;
    assert_eq!(cancelled.reason, CancelReason::PaymentDeclined);
    assert_eq!(outbox_len(harness.pool()).await?, 1);
    Ok(())
}

// Answers out of order: the first end of an order stands.

#[tokio::test]
async fn a_shipment_scheduled_after_the_order_was_cancelled_confirms_nothing() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    deliver_answer(&mut harness, "payments", &order, &declined(&order)).await?;
    let cancelled = order_row(harness.pool(), order.order_id).await?;

    // Late: shipping scheduled it before it saw the order.cancelled orders emitted.
    let emitted = deliver_answer(&mut harness, "shipping", &order, &scheduled(&order)).await?;

    // No order.confirmed: shipping cancels its shipment on that order.cancelled instead.
    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(order_row(harness.pool(), order.order_id).await?, cancelled);
    let detail = "credit-limit-exceeded: 3597 EUR";
    assert_cancelled(&cancelled, "payment-declined", detail);
    assert_eq!(outbox_len(harness.pool()).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_rejection_after_the_confirmation_leaves_the_order_confirmed() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    deliver_answer(&mut harness, "shipping", &order, &scheduled(&order)).await?;
    let confirmed = order_row(harness.pool(), order.order_id).await?;

    let emitted = deliver_answer(&mut harness, "inventory", &order, &rejected(&order)).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(order_row(harness.pool(), order.order_id).await?, confirmed);
    assert_eq!(confirmed.status, "confirmed");
    Ok(())
}

#[tokio::test]
async fn a_deadline_after_the_confirmation_leaves_the_order_confirmed() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    deliver_answer(&mut harness, "shipping", &order, &scheduled(&order)).await?;
    let confirmed = order_row(harness.pool(), order.order_id).await?;

    // Due while the confirmation was being handled: it left the schedule before the
    // confirmation could take it back.
    let passed = deadline_passed(&order);
    let emitted = deliver_answer(&mut harness, "orders", &order, &passed).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(order_row(harness.pool(), order.order_id).await?, confirmed);
    assert_eq!(confirmed.status, "confirmed");
    Ok(())
}

#[tokio::test]
async fn a_second_refusal_keeps_the_first_reason() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    deliver_answer(&mut harness, "inventory", &order, &rejected(&order)).await?;

    let emitted = deliver_answer(&mut harness, "shipping", &order, &failed(&order)).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let row = order_row(harness.pool(), order.order_id).await?;
    assert_cancelled(&row, "inventory-rejected", "insufficient-stock: TEA-GREEN");
    Ok(())
}

#[tokio::test]
async fn an_answer_about_an_order_not_placed_here_changes_nothing() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = new_order();

    let emitted = deliver_answer(&mut harness, "shipping", &order, &scheduled(&order)).await?;

    // Acknowledged, not retried: orders keeps no answer for an order it does not know.
    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(harness.pool())
        .await?;
    assert_eq!(orders, 0);
    Ok(())
}

// Poison events: data that breaks the contract never reaches a handler.

#[tokio::test]
async fn a_shipment_scheduled_without_an_address_is_dead_lettered_as_schema() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let (order_id, user_id) = (order.order_id, order.user_id);
    let data = json!({ "order_id": order_id, "shipment_id": Uuid::now_v7(), "user_id": user_id });
    let poison = Envelope::new("shipping", ShipmentScheduledV1::TYPE, data)
        .with_subject(order_id.to_string());

    let handling = harness.deliver(&poison).await?;

    let kind = handling.dead_letter_kind();
    assert_eq!(kind, Some(DeadLetterKind::Schema), "{handling:?}");
    let row = order_row(harness.pool(), order_id).await?;
    assert_eq!(row.status, "pending", "{row:?}");
    assert_eq!(outbox_len(harness.pool()).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_rejection_with_a_reason_outside_the_closed_list_is_dead_lettered_as_schema()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let order = placed(&harness).await?;
    let order_id = order.order_id;
    let data = json!({ "order_id": order_id, "reason": "out-of-stock", "skus": ["TEA-GREEN"] });
    let poison = Envelope::new("inventory", InventoryRejectedV1::TYPE, data)
        .with_subject(order_id.to_string());

    let handling = harness.deliver(&poison).await?;

    let kind = handling.dead_letter_kind();
    assert_eq!(kind, Some(DeadLetterKind::Schema), "{handling:?}");
    let row = order_row(harness.pool(), order_id).await?;
    assert_eq!(row.status, "pending", "{row:?}");
    Ok(())
}

// The copies of users and products: newer versions win, whatever order they arrive in.

#[tokio::test]
async fn a_registered_user_is_cached_as_active() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let registered = user(1);

    let emitted = from_users(&mut harness, registered.user_id, &registered).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let cached = cached_user(harness.pool(), registered.user_id).await?;
    assert_eq!(cached, (true, 1));
    Ok(())
}

#[tokio::test]
async fn a_deactivation_at_the_version_of_the_last_update_wins() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let registered = user(1);
    let id = registered.user_id;
    from_users(&mut harness, id, &registered).await?;
    from_users(&mut harness, id, &user_updated(&registered, 3)).await?;

    // A republish sends a deactivated user's state and its deactivation at one version.
    from_users(&mut harness, id, &user_deactivated(&registered, 3)).await?;

    assert_eq!(cached_user(harness.pool(), id).await?, (false, 3));
    Ok(())
}

#[tokio::test]
async fn an_update_arriving_after_the_deactivation_at_its_version_does_not_reactivate_the_user()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let registered = user(1);
    let id = registered.user_id;
    from_users(&mut harness, id, &registered).await?;
    from_users(&mut harness, id, &user_deactivated(&registered, 3)).await?;

    from_users(&mut harness, id, &user_updated(&registered, 3)).await?;

    assert_eq!(cached_user(harness.pool(), id).await?, (false, 3));
    Ok(())
}

#[tokio::test]
async fn an_older_update_arriving_late_does_not_reactivate_the_user() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let registered = user(1);
    let id = registered.user_id;
    from_users(&mut harness, id, &registered).await?;
    from_users(&mut harness, id, &user_deactivated(&registered, 3)).await?;

    from_users(&mut harness, id, &user_updated(&registered, 2)).await?;

    assert_eq!(cached_user(harness.pool(), id).await?, (false, 3));
    Ok(())
}

#[tokio::test]
async fn a_created_product_is_cached_with_its_price() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let created = product_created(799);

    let emitted = from_inventory(&mut harness, &created).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let cached = cached_product(harness.pool(), SKU).await?;
    assert_eq!(cached, (799, "EUR".to_owned(), 1));
    Ok(())
}

#[tokio::test]
async fn a_product_update_reprices_the_cached_product() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    from_inventory(&mut harness, &product_created(799)).await?;

    from_inventory(&mut harness, &product_updated(1799, 2)).await?;

    let cached = cached_product(harness.pool(), SKU).await?;
    assert_eq!(cached, (1799, "EUR".to_owned(), 2));
    Ok(())
}

#[tokio::test]
async fn a_stale_product_update_leaves_the_newer_price() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    from_inventory(&mut harness, &product_created(799)).await?;
    from_inventory(&mut harness, &product_updated(1799, 3)).await?;

    from_inventory(&mut harness, &product_updated(999, 2)).await?;

    let cached = cached_product(harness.pool(), SKU).await?;
    assert_eq!(cached, (1799, "EUR".to_owned(), 3));
    Ok(())
}
