//! The payments service's handlers on a database of their own, without a broker: charging
//! a reserved order (captured or declined), refunding a cancelled one, the cached copy of
//! users they read, and the deliveries a broker can make of them twice, late, out of order
//! or broken.

use anyhow::Context;
use conveyor::testing::{Emitted, Harness};
use conveyor::{DeadLetterKind, Envelope, Event, Names};
use conveyor_testkit::TestDatabase;
use events_schema::EventData;
use events_schema::inventory::{InventoryReservedV1, Item};
use events_schema::orders::{CancelReason, OrderCancelledV1};
use events_schema::payments::{
    DeclineReason, PaymentCapturedV1, PaymentDeclinedV1, PaymentRefundedV1,
};
use events_schema::users::{UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use serde_json::json;
use uuid::Uuid;

/// The service's consumer on a fresh, migrated database. Keep the first of the pair for the
/// whole test: dropping it drops the database.
async fn harness() -> anyhow::Result<(TestDatabase, Harness)> {
    let database = TestDatabase::migrated(&payments_service::MIGRATOR).await;
    let consumer = payments_service::consumer(&Names::default())?;
    let harness = Harness::new(consumer, database.pool()).await?;
    Ok((database, harness))
}

/// A payment row: `(id, status, amount_cents, reason)`.
type PaymentRow = (Uuid, String, i64, Option<String>);

/// The order's payment, if the service charged or declined it.
async fn payment_of(harness: &Harness, order_id: Uuid) -> anyhow::Result<Option<PaymentRow>> {
    let row =
        sqlx::query_as("SELECT id, status, amount_cents, reason FROM payments WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(harness.pool())
            .await?;
    Ok(row)
}

async fn payment_count(harness: &Harness) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(harness.pool())
        .await?)
}

/// Every event the service ever emitted (no relay runs here, so none leaves the outbox).
async fn outbox_count(harness: &Harness) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM conveyor.outbox")
        .fetch_one(harness.pool())
        .await?)
}

/// A user's cached copy: `(credit_limit_cents, active, version)`.
type CachedUser = (Option<i64>, bool, i64);

async fn cached_user(harness: &Harness, user_id: Uuid) -> anyhow::Result<CachedUser> {
    let row = sqlx::query_as(
        "SELECT credit_limit_cents, active, version FROM users_cache WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_one(harness.pool())
    .await?;
    Ok(row)
}

/// Delivers `event` as the users service publishes it (about the user), expecting it handled.
async fn from_users<E: Event>(
    harness: &mut Harness,
    user_id: Uuid,
    event: &E,
) -> anyhow::Result<Emitted> {
    let envelope = harness.envelope("users", user_id, event);
    Ok(harness.deliver(&envelope).await?.handled()?)
}

/// `user.registered` for `user_id` with `credit_limit_cents` in EUR, at `version`.
fn registration(user_id: Uuid, credit_limit_cents: i64, version: i64) -> UserRegisteredV1 {
    UserRegisteredV1 {
        user_id,
        credit_limit_cents,
        version,
        ..UserRegisteredV1::sample()
    }
}

/// A user with `credit_limit_cents` in EUR in the cached copy, as its registration leaves it.
async fn register(harness: &mut Harness, credit_limit_cents: i64) -> anyhow::Result<Uuid> {
    let user_id = Uuid::now_v7();
    let registered = registration(user_id, credit_limit_cents, 1);
    from_users(harness, user_id, &registered).await?;
    Ok(user_id)
}

/// Inventory's reservation of a new order of `user_id`'s, for `total_cents` in EUR.
fn reservation(user_id: Uuid, total_cents: i64) -> InventoryReservedV1 {
    InventoryReservedV1 {
        order_id: Uuid::now_v7(),
        items: vec![Item {
            sku: "MUG-BLUE".to_owned(),
            quantity: 2,
        }],
        user_id: Some(user_id),
        total_cents: Some(total_cents),
        currency: Some("EUR".to_owned()),
    }
}

/// The orders service's cancellation of the reserved order.
fn cancellation(reserved: &InventoryReservedV1) -> OrderCancelledV1 {
    OrderCancelledV1 {
        order_id: reserved.order_id,
        user_id: reserved.user_id.unwrap_or_default(),
        reason: CancelReason::CustomerCancelled,
        detail: None,
        skus: reserved.items.iter().map(|item| item.sku.clone()).collect(),
    }
}

/// `event` as its owner `source` publishes it: about the order, in the order's own flow (its
/// correlation id is the order id, unlike the event's own id).
fn saga_event<E: Event>(harness: &Harness, source: &str, order_id: Uuid, event: &E) -> Envelope {
    harness
        .envelope(source, order_id, event)
        .with_correlation_id(order_id)
}

fn from_inventory(harness: &Harness, reserved: &InventoryReservedV1) -> Envelope {
    saga_event(harness, "inventory", reserved.order_id, reserved)
}

fn from_orders(harness: &Harness, cancelled: &OrderCancelledV1) -> Envelope {
    saga_event(harness, "orders", cancelled.order_id, cancelled)
}

#[tokio::test]
async fn a_reserved_order_within_the_credit_limit_is_captured() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let order = reservation(user_id, 2_500);
    let reserved = from_inventory(&harness, &order);

    let emitted = harness.deliver(&reserved).await?.handled()?;

    let captured = emitted.one::<PaymentCapturedV1>()?;
    assert_eq!(captured.order_id, order.order_id);
    assert_eq!(captured.user_id, user_id);
    assert_eq!(captured.amount_cents, 2_500);
    assert_eq!(captured.currency, "EUR");
    emitted.answer_to(&reserved)?;
    let (payment_id, status, amount_cents, reason) = payment_of(&harness, order.order_id)
        .await?
        .context("the payment is recorded")?;
    assert_eq!(payment_id, captured.payment_id);
    assert_eq!(status, "captured");
    assert_eq!(amount_cents, 2_500);
    assert_eq!(reason, None);
    Ok(())
}

#[tokio::test]
async fn an_order_beyond_the_remaining_balance_is_declined() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 3_000).await?;
    let first = reservation(user_id, 2_000);
    harness
        .deliver(&from_inventory(&harness, &first))
        .await?
        .handled()?;
    let second = reservation(user_id, 1_500);
    let reserved = from_inventory(&harness, &second);

    // Each order alone is within the limit; together with what is captured, this one is not.
    let emitted = harness.deliver(&reserved).await?.handled()?;

    let declined = emitted.one::<PaymentDeclinedV1>()?;
    assert_eq!(declined.order_id, second.order_id);
    assert_eq!(declined.user_id, user_id);
    assert_eq!(declined.amount_cents, 1_500);
    assert_eq!(declined.reason, DeclineReason::CreditLimitExceeded);
    emitted.answer_to(&reserved)?;
    let (_, status, amount_cents, reason) = payment_of(&harness, second.order_id)
        .await?
        .context("the decline is recorded")?;
    assert_eq!(status, "declined");
    assert_eq!(amount_cents, 1_500);
    assert_eq!(reason.as_deref(), Some("credit-limit-exceeded"));
    Ok(())
}

#[tokio::test]
async fn an_order_of_a_deactivated_user_is_declined() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let deactivated = UserDeactivatedV1 {
        user_id,
        version: 2,
    };
    from_users(&mut harness, user_id, &deactivated).await?;
    let order = reservation(user_id, 100);

    let emitted = harness
        .deliver(&from_inventory(&harness, &order))
        .await?
        .handled()?;

    let declined = emitted.one::<PaymentDeclinedV1>()?;
    assert_eq!(declined.reason, DeclineReason::UserDeactivated);
    let (_, status, _, reason) = payment_of(&harness, order.order_id)
        .await?
        .context("the decline is recorded")?;
    assert_eq!(status, "declined");
    assert_eq!(reason.as_deref(), Some("user-deactivated"));
    Ok(())
}

#[tokio::test]
async fn a_captured_payment_is_refunded_once_when_the_order_is_cancelled() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let order = reservation(user_id, 2_500);
    harness
        .deliver(&from_inventory(&harness, &order))
        .await?
        .handled()?;
    let cancelled = from_orders(&harness, &cancellation(&order));
    // A second cancellation of the same order, a new event: the deadline passing as well.
    let deadline = OrderCancelledV1 {
        reason: CancelReason::DeadlinePassed,
        ..cancellation(&order)
    };

    let emitted = harness.deliver(&cancelled).await?.handled()?;
    let emitted_again = harness
        .deliver(&from_orders(&harness, &deadline))
        .await?
        .handled()?;

    let refunded = emitted.one::<PaymentRefundedV1>()?;
    let (payment_id, status, _, _) = payment_of(&harness, order.order_id)
        .await?
        .context("the payment row stays")?;
    assert_eq!(refunded.order_id, order.order_id);
    assert_eq!(refunded.payment_id, payment_id);
    assert_eq!(refunded.amount_cents, 2_500);
    assert_eq!(refunded.currency, "EUR");
    emitted.answer_to(&cancelled)?;
    assert!(emitted_again.is_empty(), "{:?}", emitted_again.types());
    assert_eq!(status, "refunded");
    assert_eq!(payment_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_refund_gives_the_amount_back_to_the_users_balance() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 3_000).await?;
    let first = reservation(user_id, 2_000);
    harness
        .deliver(&from_inventory(&harness, &first))
        .await?
        .handled()?;
    harness
        .deliver(&from_orders(&harness, &cancellation(&first)))
        .await?
        .handled()?;
    let second = reservation(user_id, 2_000);

    let emitted = harness
        .deliver(&from_inventory(&harness, &second))
        .await?
        .handled()?;

    assert_eq!(emitted.one::<PaymentCapturedV1>()?.amount_cents, 2_000);
    let (_, status, _, _) = payment_of(&harness, second.order_id)
        .await?
        .context("the second payment is recorded")?;
    assert_eq!(status, "captured");
    Ok(())
}

#[tokio::test]
async fn a_declined_order_has_nothing_to_refund_when_cancelled() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 1_000).await?;
    let order = reservation(user_id, 5_000);
    harness
        .deliver(&from_inventory(&harness, &order))
        .await?
        .handled()?;
    let cancelled = OrderCancelledV1 {
        reason: CancelReason::PaymentDeclined,
        ..cancellation(&order)
    };

    let emitted = harness
        .deliver(&from_orders(&harness, &cancelled))
        .await?
        .handled()?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let (_, status, _, _) = payment_of(&harness, order.order_id)
        .await?
        .context("the decline stays recorded")?;
    assert_eq!(status, "declined");
    Ok(())
}

#[tokio::test]
async fn the_same_inventory_reserved_delivered_twice_charges_once() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let reserved = from_inventory(&harness, &reservation(user_id, 2_500));
    harness.deliver(&reserved).await?.handled()?;
    let emitted_before = outbox_count(&harness).await?;

    let again = harness.deliver(&reserved).await?;

    assert!(again.is_duplicate(), "{again:?}");
    assert_eq!(payment_count(&harness).await?, 1);
    assert_eq!(outbox_count(&harness).await?, emitted_before);
    Ok(())
}

#[tokio::test]
async fn a_redelivery_after_the_commit_is_a_duplicate_even_for_a_restarted_consumer()
-> anyhow::Result<()> {
    let (database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let reserved = from_inventory(&harness, &reservation(user_id, 2_500));
    harness.deliver(&reserved).await?.handled()?;

    // The process died after its commit, before the ack: the broker hands the delivery to
    // the next process, which knows it only from the inbox in the database.
    let consumer = payments_service::consumer(&Names::default())?;
    let mut restarted = Harness::new(consumer, database.pool()).await?;
    let redelivered = restarted.deliver(&reserved).await?;

    assert!(redelivered.is_duplicate(), "{redelivered:?}");
    assert_eq!(payment_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_inventory_reserved_published_again_under_a_new_id_charges_nothing_more()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let order = reservation(user_id, 2_500);
    harness
        .deliver(&from_inventory(&harness, &order))
        .await?
        .handled()?;

    // A new envelope id gets past the inbox: the payment row is what stops it.
    let emitted = harness
        .deliver(&from_inventory(&harness, &order))
        .await?
        .handled()?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    assert_eq!(payment_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_order_cancelled_before_its_reservation_arrives_is_never_charged() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let order = reservation(user_id, 2_500);

    let on_cancel = harness
        .deliver(&from_orders(&harness, &cancellation(&order)))
        .await?
        .handled()?;
    let on_reserve = harness
        .deliver(&from_inventory(&harness, &order))
        .await?
        .handled()?;

    // Nothing to refund yet; the guard remembers the cancellation, so the late reservation
    // is neither captured nor declined.
    assert!(on_cancel.is_empty(), "{:?}", on_cancel.types());
    assert!(on_reserve.is_empty(), "{:?}", on_reserve.types());
    assert_eq!(payment_of(&harness, order.order_id).await?, None);
    Ok(())
}

#[tokio::test]
async fn a_charge_for_a_user_not_yet_cached_is_retried_and_captured_once_the_user_arrives()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = Uuid::now_v7();
    let order = reservation(user_id, 2_500);
    let reserved = from_inventory(&harness, &order);

    // The order passed the orders service's copy of users: this copy is behind, not wrong.
    let first = harness.deliver(&reserved).await?;
    let retry = first.as_retry().context("expected a retry")?;
    assert_eq!(retry.attempts, 1);
    assert_eq!(payment_count(&harness).await?, 0);
    from_users(&mut harness, user_id, &registration(user_id, 10_000, 1)).await?;
    let emitted = harness.retry(retry).await?.handled()?;
    let handed_back_again = harness.retry(retry).await?;

    let captured = emitted.one::<PaymentCapturedV1>()?;
    assert_eq!(captured.order_id, order.order_id);
    assert_eq!(captured.amount_cents, 2_500);
    emitted.answer_to(&reserved)?;
    assert!(handed_back_again.is_duplicate(), "{handed_back_again:?}");
    assert_eq!(payment_count(&harness).await?, 1);
    Ok(())
}

#[tokio::test]
async fn an_inventory_reserved_without_its_payer_is_dead_lettered_as_permanent()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    // As inventory sent it before the payer and total were added: valid, but not chargeable.
    let legacy = InventoryReservedV1 {
        user_id: None,
        total_cents: None,
        currency: None,
        ..reservation(Uuid::now_v7(), 2_500)
    };

    let handling = harness.deliver(&from_inventory(&harness, &legacy)).await?;

    assert_eq!(
        handling.dead_letter_kind(),
        Some(DeadLetterKind::Permanent),
        "{handling:?}"
    );
    assert_eq!(payment_count(&harness).await?, 0);
    Ok(())
}

#[tokio::test]
async fn an_inventory_reserved_breaking_its_schema_is_dead_lettered_and_charges_nothing()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 10_000).await?;
    let order_id = Uuid::now_v7();
    // A negative total would be a credit, not a charge.
    let data = json!({
        "order_id": order_id,
        "items": [{"sku": "MUG-BLUE", "quantity": 2}],
        "user_id": user_id,
        "total_cents": -2_500,
        "currency": "EUR",
    });
    let poison = Envelope::new("inventory", InventoryReservedV1::TYPE, data)
        .with_subject(order_id.to_string());

    let handling = harness.deliver(&poison).await?;

    assert_eq!(
        handling.dead_letter_kind(),
        Some(DeadLetterKind::Schema),
        "{handling:?}"
    );
    assert!(
        format!("{handling:?}").contains("/total_cents"),
        "{handling:?}"
    );
    assert_eq!(payment_count(&harness).await?, 0);
    Ok(())
}

#[tokio::test]
async fn an_older_user_update_arriving_late_leaves_the_cached_limit_as_it_is() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await?;
    let user_id = register(&mut harness, 1_000).await?;
    let update = |credit_limit_cents, version| UserUpdatedV1 {
        user_id,
        credit_limit_cents,
        version,
        ..UserUpdatedV1::sample()
    };

    let newer = from_users(&mut harness, user_id, &update(5_000, 3)).await?;
    let older = from_users(&mut harness, user_id, &update(100, 2)).await?;

    assert!(newer.is_empty() && older.is_empty());
    assert_eq!(
        cached_user(&harness, user_id).await?,
        (Some(5_000), true, 3)
    );
    Ok(())
}

#[tokio::test]
async fn a_deactivation_arriving_before_the_registration_keeps_the_user_deactivated()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await?;
    let user_id = Uuid::now_v7();
    let deactivated = UserDeactivatedV1 {
        user_id,
        version: 2,
    };

    from_users(&mut harness, user_id, &deactivated).await?;
    from_users(&mut harness, user_id, &registration(user_id, 5_000, 1)).await?;
    let emitted = harness
        .deliver(&from_inventory(&harness, &reservation(user_id, 100)))
        .await?
        .handled()?;

    // The late registration fills in the limit; it does not bring the user back.
    assert_eq!(
        cached_user(&harness, user_id).await?,
        (Some(5_000), false, 2)
    );
    assert_eq!(
        emitted.one::<PaymentDeclinedV1>()?.reason,
        DeclineReason::UserDeactivated
    );
    Ok(())
}
