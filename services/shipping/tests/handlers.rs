//! Shipping's handlers on a database of their own, without a broker: a shipment scheduled
//! (or failed) on `payment.captured`, cancelled on `order.cancelled`, and the cached copy of
//! users those shipments are addressed from.

use anyhow::Context;
use conveyor::testing::{Emitted, Harness};
use conveyor::{DeadLetterKind, Envelope, Event};
use conveyor_testkit::TestDatabase;
use events_schema::orders::{CancelReason, OrderCancelledV1};
use events_schema::payments::PaymentCapturedV1;
use events_schema::shipping::{
    ShipmentCancelledV1, ShipmentFailedV1, ShipmentFailure, ShipmentScheduledV1,
};
use events_schema::users::{Address, UserDeactivatedV1, UserRegisteredV1, UserUpdatedV1};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Shipping's real consumer on a freshly migrated database, serving the default countries
/// (Europe and North America, not Japan). Keep the database alive for the whole test.
async fn harness() -> (TestDatabase, Harness) {
    let database = TestDatabase::migrated(&shipping_service::MIGRATOR).await;
    let settings = shipping_service::Settings::default();
    let consumer = shipping_service::consumer(&conveyor::Names::default(), &settings)
        .expect("shipping's consumer builds");
    let harness = Harness::new(consumer, database.pool())
        .await
        .expect("the harness installs the inbox and outbox");
    (database, harness)
}

fn address(city: &str, country: &str) -> Address {
    Address {
        line1: "12 Main Street".into(),
        city: city.into(),
        postal_code: "75002".into(),
        country: country.into(),
    }
}

/// A new user with an address in `country`, at version 1.
fn registered(country: &str) -> UserRegisteredV1 {
    UserRegisteredV1 {
        user_id: Uuid::now_v7(),
        email: "grace@example.com".into(),
        name: "Grace Hopper".into(),
        address: address("Paris", country),
        credit_limit_cents: 100_000,
        currency: "EUR".into(),
        version: 1,
    }
}

fn updated(user: &UserRegisteredV1, address: Address, version: i64) -> UserUpdatedV1 {
    UserUpdatedV1 {
        user_id: user.user_id,
        email: user.email.clone(),
        name: user.name.clone(),
        address,
        credit_limit_cents: user.credit_limit_cents,
        currency: user.currency.clone(),
        version,
    }
}

fn deactivation(user_id: Uuid, version: i64) -> UserDeactivatedV1 {
    UserDeactivatedV1 { user_id, version }
}

/// A new order of `user_id`, paid.
fn paid(user_id: Uuid) -> PaymentCapturedV1 {
    PaymentCapturedV1 {
        order_id: Uuid::now_v7(),
        payment_id: Uuid::now_v7(),
        user_id,
        amount_cents: 2397,
        currency: "EUR".into(),
    }
}

/// A saga event as its owner publishes it: about the order, in the order's flow (orders
/// starts each flow with the order id as its correlation id).
fn saga_event<E: Event>(harness: &Harness, source: &str, order_id: Uuid, event: &E) -> Envelope {
    harness
        .envelope(source, order_id, event)
        .with_correlation_id(order_id)
}

fn payment_event(harness: &Harness, payment: &PaymentCapturedV1) -> Envelope {
    saga_event(harness, "payments", payment.order_id, payment)
}

fn cancel_event(harness: &Harness, order_id: Uuid, user_id: Uuid) -> Envelope {
    let cancelled = OrderCancelledV1 {
        order_id,
        user_id,
        reason: CancelReason::CustomerCancelled,
        detail: None,
        skus: vec!["TEA-GREEN".into()],
    };
    saga_event(harness, "orders", order_id, &cancelled)
}

/// Delivers a users-service event about `user_id`, which must be handled.
async fn from_users<E: Event>(
    harness: &mut Harness,
    user_id: Uuid,
    event: &E,
) -> anyhow::Result<()> {
    let delivered = harness.envelope("users", user_id, event);
    harness.deliver(&delivered).await?.handled()?;
    Ok(())
}

/// Delivers `payment`, which must be handled; what it emitted.
async fn pay(harness: &mut Harness, payment: &PaymentCapturedV1) -> anyhow::Result<Emitted> {
    let delivered = payment_event(harness, payment);
    Ok(harness.deliver(&delivered).await?.handled()?)
}

/// Delivers an `order.cancelled`, which must be handled; what it emitted.
async fn cancel(harness: &mut Harness, order_id: Uuid, user_id: Uuid) -> anyhow::Result<Emitted> {
    let delivered = cancel_event(harness, order_id, user_id);
    Ok(harness.deliver(&delivered).await?.handled()?)
}

/// A user of `country`, registered.
async fn user_in(harness: &mut Harness, country: &str) -> anyhow::Result<UserRegisteredV1> {
    let user = registered(country);
    from_users(harness, user.user_id, &user).await?;
    Ok(user)
}

/// Registers a user in `country` and pays an order of theirs: the shipment scheduled.
async fn shipped(harness: &mut Harness, country: &str) -> anyhow::Result<ShipmentScheduledV1> {
    let user = user_in(harness, country).await?;
    Ok(pay(harness, &paid(user.user_id)).await?.one()?)
}

/// A row of `shipments`: (id, status, country).
type Shipment = (Uuid, String, String);

fn shipment(id: Uuid, status: &str, country: &str) -> Shipment {
    (id, status.to_owned(), country.to_owned())
}

/// The order's shipments.
async fn shipments(pool: &PgPool, order_id: Uuid) -> anyhow::Result<Vec<Shipment>> {
    let query = "SELECT id, status, country FROM shipments WHERE order_id = $1";
    Ok(sqlx::query_as(query).bind(order_id).fetch_all(pool).await?)
}

/// Why the order's shipment failed, if it did.
async fn failure(pool: &PgPool, order_id: Uuid) -> anyhow::Result<Option<String>> {
    let query = "SELECT reason FROM failed_orders WHERE order_id = $1";
    Ok(sqlx::query_scalar(query)
        .bind(order_id)
        .fetch_optional(pool)
        .await?)
}

/// Shipping's copy of a user.
#[derive(Debug, sqlx::FromRow)]
struct CachedUser {
    city: Option<String>,
    country: Option<String>,
    active: bool,
    version: i64,
}

async fn cached_user(pool: &PgPool, user_id: Uuid) -> anyhow::Result<CachedUser> {
    let query = "SELECT city, country, active, version FROM users_cache WHERE user_id = $1";
    Ok(sqlx::query_as(query).bind(user_id).fetch_one(pool).await?)
}

/// Every event in the outbox, relayed or not: all the service ever emitted.
async fn outbox_len(pool: &PgPool) -> anyhow::Result<i64> {
    let query = "SELECT count(*) FROM conveyor.outbox";
    Ok(sqlx::query_scalar(query).fetch_one(pool).await?)
}

// Schedule: payment.captured → shipment.scheduled or shipment.failed.

#[tokio::test]
async fn a_captured_payment_schedules_a_shipment_to_the_users_cached_address() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let payment = paid(user.user_id);
    let delivered = payment_event(&harness, &payment);

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let scheduled = emitted.one::<ShipmentScheduledV1>()?;
    assert_eq!(scheduled.order_id, payment.order_id);
    assert_eq!(scheduled.user_id, user.user_id);
    assert_eq!(scheduled.address, user.address);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let rows = shipments(harness.pool(), payment.order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "scheduled", "FR")]);
    Ok(())
}

#[tokio::test]
async fn a_payment_for_an_address_in_a_country_not_served_fails_the_shipment() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "JP").await?;
    let payment = paid(user.user_id);
    let delivered = payment_event(&harness, &payment);

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let expected = ShipmentFailedV1 {
        order_id: payment.order_id,
        reason: ShipmentFailure::UndeliverableCountry,
        country: Some("JP".into()),
    };
    assert_eq!(emitted.one::<ShipmentFailedV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let rows = shipments(harness.pool(), payment.order_id).await?;
    assert!(rows.is_empty(), "{rows:?}");
    let reason = failure(harness.pool(), payment.order_id).await?;
    assert_eq!(reason.as_deref(), Some("undeliverable-country"));
    Ok(())
}

#[tokio::test]
async fn a_payment_for_a_user_not_in_the_copy_yet_is_retried_and_ships_once_the_user_arrives()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = registered("DE");
    let delivered = payment_event(&harness, &paid(user.user_id));
    // The user's registration is still on its way: the copy is behind, the user exists.
    let first = harness.deliver(&delivered).await?;
    let retry = first.as_retry().context("expected a retry")?;
    from_users(&mut harness, user.user_id, &user).await?;

    let emitted = harness.retry(retry).await?.handled()?;

    assert_eq!(retry.attempts, 1);
    let error = &retry.error;
    assert!(error.contains(&user.user_id.to_string()), "{error}");
    assert_eq!(emitted.one::<ShipmentScheduledV1>()?.address, user.address);
    emitted.answer_to(&delivered)?;
    Ok(())
}

#[tokio::test]
async fn a_payment_for_a_user_who_never_arrives_is_dead_lettered_once_the_retries_run_out()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let payment = paid(Uuid::now_v7());
    let mut handling = harness.deliver(&payment_event(&harness, &payment)).await?;

    // The default tiers: 1 s, 10 s, 60 s; the failure after the third is the last.
    for _ in 0..3 {
        let retry = handling.as_retry().context("expected a retry")?;
        let next = harness.retry(retry).await?;
        handling = next;
    }

    let kind = handling.dead_letter_kind();
    assert_eq!(kind, Some(DeadLetterKind::RetriesExhausted), "{handling:?}");
    // No `shipment.failed` (`unknown-address`) either: the order waits for its deadline.
    assert_eq!(outbox_len(harness.pool()).await?, 0);
    let reason = failure(harness.pool(), payment.order_id).await?;
    assert!(reason.is_none(), "{reason:?}");
    Ok(())
}

#[tokio::test]
async fn a_paid_order_of_a_user_deactivated_since_still_ships() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "IE").await?;
    let deactivated = deactivation(user.user_id, 2);
    from_users(&mut harness, user.user_id, &deactivated).await?;

    let emitted = pay(&mut harness, &paid(user.user_id)).await?;

    // Orders and payments refuse a deactivated user at their steps; what was paid ships.
    assert_eq!(emitted.one::<ShipmentScheduledV1>()?.address, user.address);
    Ok(())
}

// The same payment again: the inbox, and the step's own guard.

#[tokio::test]
async fn a_payment_redelivered_after_its_commit_is_a_duplicate_and_changes_nothing()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let delivered = payment_event(&harness, &paid(user.user_id));
    let emitted = harness.deliver(&delivered).await?.handled()?;
    let scheduled = emitted.one::<ShipmentScheduledV1>()?;

    // The broker hands the committed delivery back, as after a lost ack.
    let again = harness.deliver(&delivered).await?;

    assert!(again.is_duplicate(), "{again:?}");
    let rows = shipments(harness.pool(), scheduled.order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "scheduled", "FR")]);
    assert_eq!(outbox_len(harness.pool()).await?, 1);
    Ok(())
}

#[tokio::test]
async fn two_copies_of_one_payment_in_one_batch_schedule_one_shipment() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let payment = paid(user.user_id);
    let delivered = payment_event(&harness, &payment);

    let copies = [delivered.clone(), delivered.clone()];
    let mut handled = harness.deliver_batch(&copies).await?;

    assert!(handled[1].is_duplicate(), "{:?}", handled[1]);
    let scheduled = handled.remove(0).handled()?.one::<ShipmentScheduledV1>()?;
    let rows = shipments(harness.pool(), payment.order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "scheduled", "FR")]);
    assert_eq!(outbox_len(harness.pool()).await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_second_payment_event_for_a_shipped_order_schedules_nothing_more() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let scheduled = shipped(&mut harness, "FR").await?;
    let mut payment = paid(scheduled.user_id);
    payment.order_id = scheduled.order_id;

    // A new event id for the same order (a republish): the inbox cannot tell, the step can.
    let emitted = pay(&mut harness, &payment).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let rows = shipments(harness.pool(), scheduled.order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "scheduled", "FR")]);
    Ok(())
}

// Cancel: order.cancelled → shipment.cancelled, through flows::UndoOnFailure.

#[tokio::test]
async fn a_cancelled_order_cancels_its_scheduled_shipment() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let scheduled = shipped(&mut harness, "FR").await?;
    let delivered = cancel_event(&harness, scheduled.order_id, scheduled.user_id);

    let emitted = harness.deliver(&delivered).await?.handled()?;

    let expected = ShipmentCancelledV1 {
        order_id: scheduled.order_id,
        shipment_id: scheduled.shipment_id,
    };
    assert_eq!(emitted.one::<ShipmentCancelledV1>()?, expected);
    assert_eq!(emitted.len(), 1, "{:?}", emitted.types());
    emitted.answer_to(&delivered)?;
    let rows = shipments(harness.pool(), scheduled.order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "cancelled", "FR")]);
    Ok(())
}

#[tokio::test]
async fn an_order_cancelled_before_its_payment_emits_no_shipment_cancellation() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await;
    let order_id = Uuid::now_v7();

    let emitted = cancel(&mut harness, order_id, Uuid::now_v7()).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let rows = shipments(harness.pool(), order_id).await?;
    assert!(rows.is_empty(), "{rows:?}");
    Ok(())
}

#[tokio::test]
async fn a_payment_arriving_after_the_cancellation_ships_nothing() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let payment = paid(user.user_id);
    // Out of order: the cancellation overtook the payment it would undo.
    cancel(&mut harness, payment.order_id, user.user_id).await?;

    let emitted = pay(&mut harness, &payment).await?;

    // The compensation guard: a step after the order's cancellation is skipped for good.
    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let rows = shipments(harness.pool(), payment.order_id).await?;
    assert!(rows.is_empty(), "{rows:?}");
    let reason = failure(harness.pool(), payment.order_id).await?;
    assert!(reason.is_none(), "{reason:?}");
    Ok(())
}

#[tokio::test]
async fn a_payment_after_the_cancellation_is_not_retried_even_when_the_user_is_unknown()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let payment = paid(Uuid::now_v7());
    cancel(&mut harness, payment.order_id, payment.user_id).await?;

    let handling = harness.deliver(&payment_event(&harness, &payment)).await?;

    // The guard is read before the copy of users: no retries for an order already over.
    assert!(handling.handled()?.is_empty());
    let rows = shipments(harness.pool(), payment.order_id).await?;
    assert!(rows.is_empty(), "{rows:?}");
    Ok(())
}

#[tokio::test]
async fn a_second_cancellation_of_a_cancelled_shipment_emits_nothing() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let scheduled = shipped(&mut harness, "FR").await?;
    cancel(&mut harness, scheduled.order_id, scheduled.user_id).await?;

    // Another order.cancelled for the same order, with an id of its own.
    let emitted = cancel(&mut harness, scheduled.order_id, scheduled.user_id).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let rows = shipments(harness.pool(), scheduled.order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "cancelled", "FR")]);
    Ok(())
}

#[tokio::test]
async fn cancelling_an_order_whose_shipment_failed_emits_nothing() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "JP").await?;
    let payment = paid(user.user_id);
    pay(&mut harness, &payment).await?;

    let emitted = cancel(&mut harness, payment.order_id, user.user_id).await?;

    assert!(emitted.is_empty(), "{:?}", emitted.types());
    let reason = failure(harness.pool(), payment.order_id).await?;
    assert_eq!(reason.as_deref(), Some("undeliverable-country"));
    Ok(())
}

// Poison events: data that breaks the contract never reaches a handler.

#[tokio::test]
async fn a_payment_whose_order_id_is_not_a_uuid_is_dead_lettered_as_schema() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let data = json!({
        "order_id": "order-42",
        "payment_id": Uuid::now_v7(),
        "user_id": Uuid::now_v7(),
        "amount_cents": 2397,
        "currency": "EUR",
    });
    let poison = Envelope::new("payments", PaymentCapturedV1::TYPE, data).with_subject("order-42");

    let handling = harness.deliver(&poison).await?;

    let kind = handling.dead_letter_kind();
    assert_eq!(kind, Some(DeadLetterKind::Schema), "{handling:?}");
    assert_eq!(outbox_len(harness.pool()).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_cancellation_with_a_reason_outside_the_closed_list_is_dead_lettered_as_schema()
-> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let scheduled = shipped(&mut harness, "FR").await?;
    let (order_id, user_id) = (scheduled.order_id, scheduled.user_id);
    let data = json!({ "order_id": order_id, "user_id": user_id, "reason": "changed-my-mind" });
    let poison =
        Envelope::new("orders", OrderCancelledV1::TYPE, data).with_subject(order_id.to_string());

    let handling = harness.deliver(&poison).await?;

    let kind = handling.dead_letter_kind();
    assert_eq!(kind, Some(DeadLetterKind::Schema), "{handling:?}");
    let rows = shipments(harness.pool(), order_id).await?;
    assert_eq!(rows, [shipment(scheduled.shipment_id, "scheduled", "FR")]);
    Ok(())
}

// The copy of users: newer versions win, whatever order they arrive in.

#[tokio::test]
async fn a_payment_after_a_user_update_ships_to_the_new_address() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let moved = updated(&user, address("Berlin", "DE"), 2);
    from_users(&mut harness, user.user_id, &moved).await?;

    let emitted = pay(&mut harness, &paid(user.user_id)).await?;

    assert_eq!(emitted.one::<ShipmentScheduledV1>()?.address, moved.address);
    Ok(())
}

#[tokio::test]
async fn an_older_update_arriving_late_leaves_the_newer_address() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let (newer, older) = (address("Berlin", "DE"), address("Rome", "IT"));
    from_users(&mut harness, user.user_id, &updated(&user, newer, 3)).await?;

    from_users(&mut harness, user.user_id, &updated(&user, older, 2)).await?;

    let cached = cached_user(harness.pool(), user.user_id).await?;
    assert_eq!(cached.city.as_deref(), Some("Berlin"), "{cached:?}");
    assert_eq!(cached.country.as_deref(), Some("DE"), "{cached:?}");
    assert_eq!(cached.version, 3);
    Ok(())
}

#[tokio::test]
async fn a_registration_overtaken_by_the_deactivation_still_gives_the_address() -> anyhow::Result<()>
{
    let (_database, mut harness) = harness().await;
    let user = registered("FR");
    from_users(&mut harness, user.user_id, &deactivation(user.user_id, 2)).await?;

    from_users(&mut harness, user.user_id, &user).await?;

    // The only address there is, kept under the deactivation's newer version.
    let cached = cached_user(harness.pool(), user.user_id).await?;
    assert_eq!(cached.country.as_deref(), Some("FR"), "{cached:?}");
    assert!(!cached.active, "{cached:?}");
    assert_eq!(cached.version, 2);
    Ok(())
}

#[tokio::test]
async fn a_deactivation_wins_a_tie_of_versions() -> anyhow::Result<()> {
    let (_database, mut harness) = harness().await;
    let user = user_in(&mut harness, "FR").await?;
    let moved = updated(&user, address("Berlin", "DE"), 3);
    from_users(&mut harness, user.user_id, &moved).await?;

    // A republish sends a deactivated user's state and its deactivation at one version.
    from_users(&mut harness, user.user_id, &deactivation(user.user_id, 3)).await?;

    let cached = cached_user(harness.pool(), user.user_id).await?;
    assert!(!cached.active, "{cached:?}");
    assert_eq!(cached.country.as_deref(), Some("DE"), "{cached:?}");
    assert_eq!(cached.version, 3);
    Ok(())
}
