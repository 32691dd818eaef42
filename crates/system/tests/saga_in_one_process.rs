//! The whole order saga in one process, without RabbitMQ: every participant's real consumer,
//! each service on a database of its own, joined by `conveyor::testing::Network` as the
//! events exchange joins them. Users has no consumer: it is only a source, so its events are
//! delivered as its HTTP handlers write them. What only a broker shows (retry delays,
//! competing replicas, redelivery after a crash) stays with the end-to-end tests in `tests/`.

use std::collections::BTreeSet;

use anyhow::Context;
use conveyor::testing::{Harness, Network, Trail};
use conveyor::{Envelope, Event, Names, Outbox};
use conveyor_testkit::TestDatabase;
use events_schema::EventContract;
use events_schema::inventory::{InventoryReleasedV1, Item};
use events_schema::orders::{
    CancelReason, OrderCancelledV1, OrderConfirmedV1, OrderCreatedV1, PricedItem,
};
use events_schema::payments::{
    DeclineReason, PaymentCapturedV1, PaymentDeclinedV1, PaymentRefundedV1,
};
use events_schema::products::ProductCreatedV1;
use events_schema::shipping::{ShipmentFailedV1, ShipmentFailure, ShipmentScheduledV1};
use events_schema::users::{Address, UserRegisteredV1};
use sqlx::PgPool;
use uuid::Uuid;

const SKU: &str = "TEA-GREEN";
const PRICE_CENTS: i64 = 799;
const STOCK: i32 = 10;
const QUANTITY: i32 = 3;
const TOTAL_CENTS: i64 = PRICE_CENTS * QUANTITY as i64;
/// Far above any order here.
const GENEROUS_CREDIT_CENTS: i64 = 100_000_000;
/// Below [`TOTAL_CENTS`]: payments declines the order.
const LOW_CREDIT_CENTS: i64 = 500;
/// Not among shipping's default countries: shipping fails the order.
const UNSERVED_COUNTRY: &str = "AQ";

/// The saga's participants, each with its real consumer on a freshly migrated database of
/// its own. The databases are dropped with the vector, so the caller keeps it to the end.
async fn system() -> (Vec<TestDatabase>, Network) {
    let names = Names::default();
    let services = [
        (
            &inventory_service::MIGRATOR,
            inventory_service::consumer(&names),
        ),
        (&orders_service::MIGRATOR, orders_service::consumer(&names)),
        (
            &payments_service::MIGRATOR,
            payments_service::consumer(&names),
        ),
        (
            &shipping_service::MIGRATOR,
            shipping_service::consumer(&names, &shipping_service::Settings::default()),
        ),
    ];
    let mut databases = Vec::new();
    let mut harnesses = Vec::new();
    for (migrator, consumer) in services {
        let database = TestDatabase::migrated(migrator).await;
        let consumer = consumer.expect("the contract's schemas compile");
        let harness = Harness::new(consumer, database.pool())
            .await
            .expect("the runtime's inbox and outbox install");
        harnesses.push(harness);
        databases.push(database);
    }
    (databases, Network::new(harnesses))
}

/// `service`'s database, to arrange rows and read them back.
fn pool(network: &mut Network, service: &str) -> anyhow::Result<PgPool> {
    Ok(network.harness(service)?.pool().clone())
}

/// An outbox that checks events against the contract, as the services' own do.
fn outbox() -> anyhow::Result<Outbox> {
    Ok(Outbox::new().with_contract(EventContract::shared()?))
}

/// Every delivery handled (or a duplicate): no retry, nothing dead-lettered.
fn assert_no_failures(trail: &Trail) {
    let failures = trail.failures();
    assert!(failures.is_empty(), "failed: {failures:#?}");
}

/// A user registered as the users service publishes it (typed data, subject the user),
/// delivered to every service that keeps a copy of users.
async fn register_user(
    network: &mut Network,
    country: &str,
    credit_limit_cents: i64,
) -> anyhow::Result<UserRegisteredV1> {
    let user_id = Uuid::now_v7();
    let user = UserRegisteredV1 {
        user_id,
        email: "grace@example.com".into(),
        name: "Grace Hopper".into(),
        address: Address {
            line1: "12 Rue de la Paix".into(),
            city: "Paris".into(),
            postal_code: "75002".into(),
            country: country.into(),
        },
        credit_limit_cents,
        currency: "EUR".into(),
        version: 1,
    };
    let event = events_schema::envelope("users", &user).with_subject(user_id.to_string());
    let trail = network.publish(event).await?;
    assert_no_failures(&trail);
    let copies: Vec<&str> = trail
        .steps()
        .iter()
        .map(|step| step.service.as_str())
        .collect();
    assert_eq!(copies, ["orders", "payments", "shipping"]);
    Ok(user)
}

/// A product with stock, as inventory's `POST /products` makes one: the row and its
/// `product.created` in one transaction; `settle` carries the event to orders' price copy,
/// as the relay would.
async fn add_product(network: &mut Network) -> anyhow::Result<()> {
    let inventory = pool(network, "inventory")?;
    let mut tx = inventory.begin().await?;
    let version: i64 = sqlx::query_scalar(
        "INSERT INTO products (sku, name, price_cents, currency, stock, version)
         VALUES ($1, 'Green tea, 100 g', $2, 'EUR', $3, 1) RETURNING version",
    )
    .bind(SKU)
    .bind(PRICE_CENTS)
    .bind(STOCK)
    .fetch_one(&mut *tx)
    .await?;
    let created = ProductCreatedV1 {
        sku: SKU.into(),
        name: "Green tea, 100 g".into(),
        price_cents: PRICE_CENTS,
        currency: "EUR".into(),
        version,
    };
    let event = events_schema::envelope("inventory", &created).with_subject(SKU);
    outbox()?.add(&mut tx, &event).await?;
    tx.commit().await?;
    let trail = network.settle().await?;
    assert_no_failures(&trail);
    assert_eq!(trail.steps().len(), 1, "only orders keeps prices");
    Ok(())
}

/// Places an order as orders' `POST /orders` does: the user and the price from orders' own
/// copies, then the pending row and `order.created` in one transaction. Returns the order's
/// id and the event as written; `network.settle()` starts the saga with it.
async fn place_order(network: &mut Network, user_id: Uuid) -> anyhow::Result<(Uuid, Envelope)> {
    let orders = pool(network, "orders")?;
    let active: Option<bool> =
        sqlx::query_scalar("SELECT active FROM users_cache WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&orders)
            .await?;
    anyhow::ensure!(
        active == Some(true),
        "orders' copy has user {user_id} as {active:?}"
    );
    let (unit_price_cents, currency): (i64, String) =
        sqlx::query_as("SELECT price_cents, currency FROM products_cache WHERE sku = $1")
            .bind(SKU)
            .fetch_optional(&orders)
            .await?
            .context("no price in orders' copy: product.created did not reach it")?;
    let order_id = Uuid::now_v7();
    let created = OrderCreatedV1 {
        order_id,
        user_id,
        items: vec![PricedItem {
            sku: SKU.into(),
            quantity: QUANTITY,
            unit_price_cents,
        }],
        total_cents: unit_price_cents * i64::from(QUANTITY),
        currency,
    };
    let saga_timeout = orders_service::Settings::default().saga_timeout;
    let mut tx = orders.begin().await?;
    sqlx::query(
        "INSERT INTO orders (id, user_id, status, items, total_cents, currency, deadline_at)
         VALUES ($1, $2, 'pending', $3, $4, $5, clock_timestamp() + make_interval(secs => $6))",
    )
    .bind(order_id)
    .bind(user_id)
    .bind(sqlx::types::Json(&created.items))
    .bind(created.total_cents)
    .bind(&created.currency)
    .bind(saga_timeout.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    // The order's own flow: its id is the saga's correlation id, and its subject the key
    // every participant serializes the order's events on.
    let event = events_schema::envelope("orders", &created)
        .with_subject(order_id.to_string())
        .with_correlation_id(order_id);
    outbox()?.add(&mut tx, &event).await?;
    tx.commit().await?;
    Ok((order_id, event))
}

/// An order placed and carried through the saga.
struct Saga {
    order_id: Uuid,
    /// `order.created` as orders wrote it to its outbox.
    created: Envelope,
    /// Every delivery it led to, until nothing was left to deliver.
    trail: Trail,
}

async fn run_saga(network: &mut Network, user_id: Uuid) -> anyhow::Result<Saga> {
    let (order_id, created) = place_order(network, user_id).await?;
    let trail = network.settle().await?;
    assert_eq!(
        trail.steps().first().map(|step| step.event.id),
        Some(created.id),
        "the saga starts from the order.created in orders' outbox"
    );
    Ok(Saga {
        order_id,
        created,
        trail,
    })
}

/// Every event the saga emitted is about the order, in its flow, and caused by an event
/// delivered before it, back to `order.created`: the chain `flow trace` follows.
fn assert_one_flow(created: &Envelope, trail: &Trail) {
    let mut delivered = BTreeSet::from([created.id]);
    for event in trail.emitted().envelopes() {
        let kind = &event.event_type;
        assert_eq!(
            event.correlationid, created.correlationid,
            "{kind} left the order's flow"
        );
        assert_eq!(
            event.subject, created.subject,
            "{kind} is about another subject"
        );
        let caused_in_flow = event
            .causationid
            .is_some_and(|cause| delivered.contains(&cause));
        assert!(
            caused_in_flow,
            "{kind} was caused by {:?}, no event of the order's flow",
            event.causationid
        );
        delivered.insert(event.id);
    }
}

/// What each service's database holds about one order once the saga settled.
struct Records {
    /// orders: the order's status, and why and how it was cancelled.
    status: String,
    reason: Option<String>,
    detail: Option<String>,
    /// inventory: the product's units in stock and reserved, and the order's reservation.
    stock: i32,
    reserved: i32,
    reservation: Option<String>,
    /// payments: status, amount and decline reason of each payment for the order.
    payments: Vec<(String, i64, Option<String>)>,
    /// shipping: id, status and country of each shipment for the order, and why it failed.
    shipments: Vec<(Uuid, String, String)>,
    shipment_failure: Option<String>,
    /// The participants that remember the order as cancelled, so a late step is skipped.
    remember_cancelled: Vec<&'static str>,
}

/// Whether a participant's guard would skip a late step of order `$1`.
const REMEMBERS_CANCELLED: &str =
    "SELECT EXISTS (SELECT 1 FROM cancelled_orders WHERE order_id = $1)";

async fn records(network: &mut Network, order_id: Uuid) -> anyhow::Result<Records> {
    let orders = pool(network, "orders")?;
    let inventory = pool(network, "inventory")?;
    let payments = pool(network, "payments")?;
    let shipping = pool(network, "shipping")?;
    let (status, reason, detail): (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT status, reason, detail FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&orders)
            .await?;
    let (stock, reserved): (i32, i32) =
        sqlx::query_as("SELECT stock, reserved FROM products WHERE sku = $1")
            .bind(SKU)
            .fetch_one(&inventory)
            .await?;
    let reservation: Option<String> =
        sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&inventory)
            .await?;
    // At most one payment and one shipment per order (their order_id is unique): a list, so
    // a second one would show.
    let payments_made: Vec<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT status, amount_cents, reason FROM payments WHERE order_id = $1")
            .bind(order_id)
            .fetch_all(&payments)
            .await?;
    let shipments: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, status, country FROM shipments WHERE order_id = $1")
            .bind(order_id)
            .fetch_all(&shipping)
            .await?;
    let shipment_failure: Option<String> =
        sqlx::query_scalar("SELECT reason FROM failed_orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&shipping)
            .await?;
    let mut remember_cancelled = Vec::new();
    for (service, database) in [
        ("inventory", &inventory),
        ("payments", &payments),
        ("shipping", &shipping),
    ] {
        let remembered: bool = sqlx::query_scalar(REMEMBERS_CANCELLED)
            .bind(order_id)
            .fetch_one(database)
            .await?;
        if remembered {
            remember_cancelled.push(service);
        }
    }
    Ok(Records {
        status,
        reason,
        detail,
        stock,
        reserved,
        reservation,
        payments: payments_made,
        shipments,
        shipment_failure,
        remember_cancelled,
    })
}

/// The cancellation delivered again, then a copy with an id of its own (orders cancelling
/// twice, say): the inbox stops the first, each participant's own guard the second, so
/// nothing is undone twice.
async fn assert_compensated_once(network: &mut Network, trail: &Trail) -> anyhow::Result<()> {
    let cancelled = trail
        .emitted()
        .envelopes()
        .iter()
        .find(|event| event.event_type == OrderCancelledV1::TYPE)
        .cloned()
        .context("the saga emitted no order.cancelled")?;

    let again = network.publish(cancelled.clone()).await?;
    let duplicates: Vec<&str> = again
        .steps()
        .iter()
        .filter(|step| step.handling.is_duplicate())
        .map(|step| step.service.as_str())
        .collect();
    assert_eq!(duplicates, ["inventory", "payments", "shipping"]);
    assert!(again.emitted().is_empty());

    let mut second = cancelled;
    second.id = Uuid::now_v7();
    let late = network.publish(second).await?;
    assert_no_failures(&late);
    assert_eq!(late.steps().len(), 3, "every participant handles it");
    let emitted = late.emitted().types();
    assert!(emitted.is_empty(), "undone twice: {emitted:?}");
    Ok(())
}

#[tokio::test]
async fn an_order_is_confirmed_through_every_service_without_a_broker() -> anyhow::Result<()> {
    let (_databases, mut network) = system().await;
    let user = register_user(&mut network, "FR", GENEROUS_CREDIT_CENTS).await?;
    add_product(&mut network).await?;

    let Saga {
        order_id,
        created,
        trail,
    } = run_saga(&mut network, user.user_id).await?;

    assert_no_failures(&trail);
    assert_eq!(
        trail.emitted().types(),
        [
            "inventory.reserved",
            "payment.captured",
            "shipment.scheduled",
            "order.confirmed"
        ]
    );
    assert_one_flow(&created, &trail);
    let confirmed = trail.one::<OrderConfirmedV1>()?;
    assert_eq!(
        confirmed,
        OrderConfirmedV1 {
            order_id,
            user_id: user.user_id,
            total_cents: TOTAL_CENTS,
            currency: "EUR".into(),
        }
    );
    let captured = trail.one::<PaymentCapturedV1>()?;
    assert_eq!(captured.amount_cents, TOTAL_CENTS);
    let scheduled = trail.one::<ShipmentScheduledV1>()?;
    assert_eq!(scheduled.address, user.address);

    let records = records(&mut network, order_id).await?;
    assert_eq!(records.status, "confirmed");
    assert_eq!((records.reason, records.detail), (None, None));
    // Inventory holds the units reserved against the stock until they ship: what is
    // available went down by the quantity.
    assert_eq!(records.stock, STOCK);
    assert_eq!(records.reserved, QUANTITY);
    assert_eq!(records.reservation.as_deref(), Some("reserved"));
    assert_eq!(
        records.payments,
        [("captured".to_owned(), TOTAL_CENTS, None)]
    );
    assert_eq!(
        records.shipments,
        [(
            scheduled.shipment_id,
            "scheduled".to_owned(),
            "FR".to_owned()
        )]
    );
    assert!(records.remember_cancelled.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order_and_every_participant_compensates_once()
-> anyhow::Result<()> {
    let (_databases, mut network) = system().await;
    let user = register_user(&mut network, "FR", LOW_CREDIT_CENTS).await?;
    add_product(&mut network).await?;

    let Saga {
        order_id,
        created,
        trail,
    } = run_saga(&mut network, user.user_id).await?;

    assert_no_failures(&trail);
    // Nothing was charged, so only inventory has something to undo.
    assert_eq!(
        trail.emitted().types(),
        [
            "inventory.reserved",
            "payment.declined",
            "order.cancelled",
            "inventory.released"
        ]
    );
    assert_one_flow(&created, &trail);
    assert_eq!(
        trail.one::<PaymentDeclinedV1>()?.reason,
        DeclineReason::CreditLimitExceeded
    );
    let cancelled = trail.one::<OrderCancelledV1>()?;
    assert_eq!(cancelled.reason, CancelReason::PaymentDeclined);
    assert_eq!(cancelled.skus, [SKU]);
    assert_eq!(
        trail.one::<InventoryReleasedV1>()?.items,
        [Item {
            sku: SKU.into(),
            quantity: QUANTITY,
        }]
    );

    let records = records(&mut network, order_id).await?;
    assert_eq!(records.status, "cancelled");
    assert_eq!(records.reason.as_deref(), Some("payment-declined"));
    let detail = format!("credit-limit-exceeded: {TOTAL_CENTS} EUR");
    assert_eq!(records.detail, Some(detail));
    assert_eq!((records.stock, records.reserved), (STOCK, 0), "stock back");
    assert_eq!(records.reservation.as_deref(), Some("released"));
    assert_eq!(
        records.payments,
        [(
            "declined".to_owned(),
            TOTAL_CENTS,
            Some("credit-limit-exceeded".to_owned())
        )]
    );
    assert!(records.shipments.is_empty());
    assert_eq!(
        records.remember_cancelled,
        ["inventory", "payments", "shipping"]
    );

    assert_compensated_once(&mut network, &trail).await
}

#[tokio::test]
async fn an_undeliverable_order_is_released_and_refunded_once() -> anyhow::Result<()> {
    let (_databases, mut network) = system().await;
    let user = register_user(&mut network, UNSERVED_COUNTRY, GENEROUS_CREDIT_CENTS).await?;
    add_product(&mut network).await?;

    let Saga {
        order_id,
        created,
        trail,
    } = run_saga(&mut network, user.user_id).await?;

    assert_no_failures(&trail);
    // Charged before shipping failed: inventory releases and payments refunds; no shipment
    // was scheduled, so shipping has nothing to cancel.
    assert_eq!(
        trail.emitted().types(),
        [
            "inventory.reserved",
            "payment.captured",
            "shipment.failed",
            "order.cancelled",
            "inventory.released",
            "payment.refunded"
        ]
    );
    assert_one_flow(&created, &trail);
    let failed = trail.one::<ShipmentFailedV1>()?;
    assert_eq!(failed.reason, ShipmentFailure::UndeliverableCountry);
    assert_eq!(failed.country.as_deref(), Some(UNSERVED_COUNTRY));
    assert_eq!(
        trail.one::<OrderCancelledV1>()?.reason,
        CancelReason::ShipmentFailed
    );
    let captured = trail.one::<PaymentCapturedV1>()?;
    let refunded = trail.one::<PaymentRefundedV1>()?;
    assert_eq!(refunded.payment_id, captured.payment_id);
    assert_eq!(refunded.amount_cents, TOTAL_CENTS);

    let records = records(&mut network, order_id).await?;
    assert_eq!(records.status, "cancelled");
    assert_eq!(records.reason.as_deref(), Some("shipment-failed"));
    let detail = format!("undeliverable-country: {UNSERVED_COUNTRY}");
    assert_eq!(records.detail, Some(detail));
    assert_eq!((records.stock, records.reserved), (STOCK, 0), "stock back");
    assert_eq!(records.reservation.as_deref(), Some("released"));
    assert_eq!(
        records.payments,
        [("refunded".to_owned(), TOTAL_CENTS, None)]
    );
    assert!(records.shipments.is_empty());
    assert_eq!(
        records.shipment_failure.as_deref(),
        Some("undeliverable-country")
    );
    assert_eq!(
        records.remember_cancelled,
        ["inventory", "payments", "shipping"]
    );

    assert_compensated_once(&mut network, &trail).await
}
