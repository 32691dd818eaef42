//! Least privilege on the broker: each service connected as its own user, with the
//! permissions `conveyor topology users` gives, runs the saga, and cannot pass off another
//! service's events as its own. What reaches a consumer from a user other than its type's
//! owner is taken from the right users only: the service's own retry copies, the
//! operators' replays, and the gateway's ingested events. Under the shared guest account
//! nothing of this is checked, so only these tests would see a slip that dead-letters
//! every retry or replay as `forbidden-source`.

use std::time::Duration;

use conveyor::dead_letter::{
    DeadLetter, DeadLetterQueue, Destination, Filter, TransferOptions, TransferReport,
};
use conveyor::{
    ConfirmChannel, ConsumerOptions, DeadLetterKind, OutgoingMessage, TraceHeaders, headers,
};
use events_schema::EventData;
use events_schema::inventory::{InventoryReservedV1, Item};
use events_schema::payments::PaymentCapturedV1;
use events_schema::products::ProductUpdatedV1;
use events_schema::publishers::GATEWAY;
use events_schema::users::UserRegisteredV1;
use lapin::types::FieldTable;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use system::ServiceName;
use uuid::Uuid;

use crate::gateway::{RunningGateway, settings_for};
use crate::helpers::{ALL, System, start_with_own_broker_users};

/// The owner of the operators' broker user (`conveyor dlq`).
const OPERATOR: &str = "operator";

/// Publishes `envelope` as the broker user of `service`, to `exchange` with `routing_key`,
/// claiming in the header to relay it for `claimed_publisher`; the broker's answer.
async fn publish_as(
    system: &System,
    service: ServiceName,
    envelope: &conveyor::Envelope,
    exchange: String,
    routing_key: String,
    claimed_publisher: Option<&str>,
) -> Result<(), conveyor::PublishError> {
    let amqp = &system.service_amqp[&service];
    let connection = amqp.connect().await.unwrap();
    let channel = ConfirmChannel::open(&connection, &amqp.user())
        .await
        .unwrap();
    let mut message = OutgoingMessage::event(&system.names, envelope, &TraceHeaders::new());
    message.exchange = exchange;
    message.routing_key = routing_key;
    if let Some(claimed) = claimed_publisher {
        let mut table = message.properties.headers().clone().unwrap_or_default();
        headers::set_str(&mut table, headers::PUBLISHER, claimed);
        message.properties = message.properties.with_headers(table);
    }
    let published = channel.publish_all(&[message]).await;
    let _ = connection.close(200, "forged".into()).await;
    published
}

#[tokio::test]
async fn services_with_their_own_broker_users_run_the_saga_and_refuse_forged_events() {
    let system = start_with_own_broker_users(&ALL, Duration::from_secs(60)).await;
    let (user, sku) = system.customer_and_product(1250, 100).await;
    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 2 }]))
        .await;
    let order = system.final_order(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed", "{order}");

    // shipping may not publish payment.captured to the events exchange at all.
    let forged_order = uuid::Uuid::new_v4();
    let captured = PaymentCapturedV1 {
        order_id: forged_order,
        ..PaymentCapturedV1::sample()
    };
    let refused = publish_as(
        &system,
        ServiceName::SHIPPING,
        &events_schema::envelope("payments", &captured),
        system.names.events_exchange(),
        "payment.captured".to_owned(),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("ACCESS_REFUSED"),
        "the broker refused the routing key: {refused}"
    );

    // Straight into payments' queue, an inventory.reserved that payments would charge if it
    // believed it: dead-lettered, with or without a claimed original publisher.
    let payments_dlq = system.names.dead_letter_queue("payments");
    for claimed in [None, Some(system.names.broker_user("inventory"))] {
        let reserved = InventoryReservedV1 {
            order_id: forged_order,
            items: vec![Item {
                sku: sku.clone(),
                quantity: 1,
            }],
            user_id: Some(user.parse().unwrap()),
            total_cents: Some(1250),
            currency: Some("EUR".to_owned()),
        };
        publish_as(
            &system,
            ServiceName::SHIPPING,
            &events_schema::envelope("inventory", &reserved),
            String::new(),
            system.names.service_queue("payments"),
            claimed.as_deref(),
        )
        .await
        .expect("shipping may write to the default exchange (its retry queues need it)");
    }
    system
        .eventually("payments dead-letters both forgeries", || async {
            system.env.queue_len(&payments_dlq).await == 2
        })
        .await;
    let letters = system.env.drain(&payments_dlq).await;
    for letter in &letters {
        let table = letter
            .properties
            .headers()
            .clone()
            .unwrap_or_else(FieldTable::default);
        assert_eq!(
            headers::get_str(&table, headers::ERROR_KIND),
            Some("forbidden-source")
        );
        assert_eq!(
            headers::get_str(&table, headers::PUBLISHER),
            Some(system.names.broker_user("shipping").as_str()),
            "the dead letter names who really sent it"
        );
    }
    assert!(
        system.payments(&forged_order.to_string()).await.is_empty(),
        "nothing was charged for the forged order"
    );
    assert!(system.shipments(&forged_order.to_string()).await.is_empty());
    system.stop().await;
}

/// Publishes `envelope` to the events exchange as the broker user of `service`, which owns
/// its type: what that service's outbox relay would send.
async fn publish_as_owner(system: &System, service: ServiceName, envelope: &conveyor::Envelope) {
    let event_type = envelope.event_type.clone();
    publish_as(
        system,
        service,
        envelope,
        system.names.events_exchange(),
        event_type.clone(),
        None,
    )
    .await
    .unwrap_or_else(|error| panic!("{service} may publish {event_type}: {error}"));
}

/// A payment captured, as payments publishes it, for a user nobody has registered yet:
/// shipping's copy of users has no address for it, so shipping fails transiently.
async fn capture_for_an_unknown_user(system: &System) -> (conveyor::Envelope, PaymentCapturedV1) {
    let captured = PaymentCapturedV1 {
        user_id: Uuid::now_v7(),
        ..PaymentCapturedV1::sample()
    };
    let payment =
        events_schema::envelope("payments", &captured).with_correlation_id(captured.order_id);
    publish_as_owner(system, ServiceName::PAYMENTS, &payment).await;
    (payment, captured)
}

/// Registers `user_id` in France, as users publishes it.
async fn register(system: &System, user_id: Uuid) {
    let registered = UserRegisteredV1 {
        user_id,
        ..UserRegisteredV1::sample()
    };
    let envelope = events_schema::envelope("users", &registered);
    publish_as_owner(system, ServiceName::USERS, &envelope).await;
}

/// Copies waiting in `service`'s retry tiers (the services keep the default tiers).
async fn retrying(system: &System, service: &str) -> u32 {
    let mut waiting = 0;
    for tier in ConsumerOptions::default().retry_tiers {
        let queue = system.names.retry_queue(service, tier);
        waiting += system.env.queue_len(&queue).await;
    }
    waiting
}

/// Fails the test, naming each letter's kind and error, when `service` has dead letters.
async fn assert_no_dead_letters(system: &System, service: &str) {
    let queue = system.names.dead_letter_queue(service);
    if system.env.queue_len(&queue).await == 0 {
        return;
    }
    let letters: Vec<String> = system
        .env
        .drain(&queue)
        .await
        .iter()
        .map(|letter| {
            let table = letter.properties.headers().clone().unwrap_or_default();
            let kind = headers::get_str(&table, headers::ERROR_KIND);
            let error = headers::get_str(&table, headers::ERROR);
            format!("{kind:?}: {error:?}")
        })
        .collect();
    panic!("{service} dead-lettered {letters:?}");
}

/// The attempt numbers `service`'s inbox recorded for `event_id`: one row when it was
/// handled once, numbered 2 or more when a retry copy was the one handled.
async fn inbox_attempts(system: &System, service: &str, event_id: Uuid) -> Vec<Option<i32>> {
    let pool = sqlx::PgPool::connect(&system.database_url(service))
        .await
        .unwrap();
    let attempts: Vec<Option<i32>> =
        sqlx::query_scalar("SELECT attempt FROM conveyor.inbox WHERE message_id = $1")
            .bind(event_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    attempts
}

/// Shortens every retry tier of `service` to 100 ms with a broker policy (the lower of a
/// policy's and a queue's own TTL applies), so a payment uses the tiers up in a moment
/// instead of 71 s. The queues, the copies and the users that publish them stay as ever.
fn shorten_retry_tiers(system: &System, service: &str) {
    let queues: Vec<String> = ConsumerOptions::default()
        .retry_tiers
        .into_iter()
        .map(|tier| system.names.retry_queue(service, tier).replace('.', r"\."))
        .collect();
    let pattern = format!("^({})$", queues.join("|"));
    system.env.broker.ctl(&[
        "set_policy",
        "-p",
        system.env.vhost.as_str(),
        "--apply-to",
        "queues",
        "shorter-retries",
        pattern.as_str(),
        r#"{"message-ttl":100}"#,
    ]);
}

/// `service`'s dead letters, read as the operators' broker user (as `conveyor dlq show`
/// does) and left in place.
async fn dead_letters_as_operator(system: &System, service: &str) -> Vec<DeadLetter> {
    let mut letters = Vec::new();
    DeadLetterQueue::open(&system.broker_users[OPERATOR], &system.names, service)
        .await
        .unwrap()
        .scan(|letter| letters.push(letter))
        .await
        .unwrap();
    letters
}

/// Replays `service`'s dead letter `id` to its queue, as `conveyor dlq replay <service>
/// --id <id>` does, connected as the operators' broker user.
async fn replay_as_operator(system: &System, service: &str, id: Uuid) -> TransferReport {
    let options = TransferOptions {
        filter: Filter {
            id: Some(id.to_string()),
            ..Filter::default()
        },
        destination: Destination::Replay,
        rate: None,
        limit: None,
        window: TransferOptions::DEFAULT_WINDOW,
        run_id: Uuid::now_v7(),
        one_per_flow: false,
        keep_ids: false,
        stop_on_came_back: false,
        stop: None,
    };
    let operator = &system.broker_users[OPERATOR];
    conveyor::dead_letter::transfer(operator, &system.names, service, &options, |_| {})
        .await
        .unwrap()
}

/// A transient failure goes through a retry tier: shipping publishes the copy as its own
/// user, naming payments as the publisher, and must believe it when it comes back. It is
/// shipped once, after a retry, and nothing is dead-lettered.
async fn a_retried_payment_is_shipped_once(system: &System) {
    let (payment, captured) = capture_for_an_unknown_user(system).await;
    system
        .eventually("shipping puts the payment in a retry tier", || async {
            assert_no_dead_letters(system, "shipping").await;
            retrying(system, "shipping").await > 0
        })
        .await;
    register(system, captured.user_id).await;
    let order = captured.order_id.to_string();
    system
        .eventually("the retried payment is shipped", || async {
            assert_no_dead_letters(system, "shipping").await;
            !system.shipments(&order).await.is_empty()
        })
        .await;
    assert_eq!(system.shipments(&order).await.len(), 1, "shipped once");
    let attempts = inbox_attempts(system, "shipping", payment.id).await;
    assert!(
        matches!(attempts.as_slice(), [Some(attempt)] if *attempt >= 2),
        "handled once, and by a retry copy: {attempts:?}"
    );
    assert_eq!(retrying(system, "shipping").await, 0, "no copy left over");
    assert_no_dead_letters(system, "shipping").await;
}

/// A payment that used up every retry tier waits in the dead letters, as shipping's own
/// user published it there. Once the user is registered, the operators' replay is
/// believed, shipped once, and leaves no dead letter behind.
async fn a_replayed_payment_is_shipped_once(system: &System) {
    shorten_retry_tiers(system, "shipping");
    let (payment, captured) = capture_for_an_unknown_user(system).await;
    let dlq = system.names.dead_letter_queue("shipping");
    // 71 s should the broker ignore the policy.
    let dead_lettered = conveyor_testkit::wait_until_every(
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async { system.env.queue_len(&dlq).await > 0 },
    )
    .await;
    assert!(dead_lettered, "the payment used up shipping's retry tiers");
    let letters: Vec<(Option<String>, Option<String>)> =
        dead_letters_as_operator(system, "shipping")
            .await
            .into_iter()
            .map(|letter| (letter.id, letter.error_kind))
            .collect();
    let exhausted = DeadLetterKind::RetriesExhausted.as_str().to_owned();
    assert_eq!(letters, [(Some(payment.id.to_string()), Some(exhausted))]);

    register(system, captured.user_id).await;
    let user = captured.user_id.to_string();
    system
        .eventually("shipping's copy knows the user", || async {
            system.cached_user("shipping", &user).await.is_some()
        })
        .await;
    let report = replay_as_operator(system, "shipping", payment.id).await;
    assert_eq!(report.done, 1, "{report:?}");
    let order = captured.order_id.to_string();
    system
        .eventually("the replayed payment is shipped", || async {
            assert_no_dead_letters(system, "shipping").await;
            !system.shipments(&order).await.is_empty()
        })
        .await;
    assert_eq!(system.shipments(&order).await.len(), 1, "shipped once");
    let attempts = inbox_attempts(system, "shipping", payment.id).await;
    assert_eq!(attempts.len(), 1, "handled once: {attempts:?}");
    assert_eq!(
        system.env.queue_len(&dlq).await,
        0,
        "the replay left no dead letter"
    );
}

#[tokio::test]
async fn retries_and_operator_replays_are_believed_from_services_with_own_broker_users() {
    let system = start_with_own_broker_users(&["shipping"], Duration::from_secs(60)).await;
    a_retried_payment_is_shipped_once(&system).await;
    a_replayed_payment_is_shipped_once(&system).await;
    system.stop().await;
}

/// A queue of the test's own bound to `event_type` on the events exchange: what the broker
/// routed of that type, with the `user_id` it vouched for.
async fn observe(system: &System, event_type: &str) -> String {
    let queue = format!("{}.observed.{event_type}", system.names.prefix());
    let connection = system.env.connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            system.names.events_exchange().as_str().into(),
            event_type.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    connection.close(200, "observing".into()).await.unwrap();
    queue
}

/// A producing system's token for `POST /api/events`, granted `product.updated`.
async fn feed_token(gateway: &RunningGateway, admin: &str) -> String {
    let grant = json!({ "name": "warehouse feed", "scopes": ["events:publish"], "event_types": ["product.updated"] });
    let (status, _, client) = gateway
        .call(Method::POST, "/api/auth/clients", Some(admin), Some(&grant))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let credentials = json!({ "grant_type": "client_credentials", "client_id": client["client_id"], "client_secret": client["client_secret"] });
    let (status, _, token) = gateway
        .call(Method::POST, "/api/auth/token", None, Some(&credentials))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    token["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_event_ingested_by_the_gateway_as_its_own_broker_user_reaches_orders_once() {
    let system = start_with_own_broker_users(&["orders"], Duration::from_secs(60)).await;
    let observed = observe(&system, "product.updated").await;
    let gateway = RunningGateway::start(api_gateway::Settings {
        // As compose runs it, under the test's prefix (CONVEYOR_NAME_PREFIX): its own user
        // with the permissions `conveyor topology users` gives it, and the test's names.
        amqp: system.broker_users[GATEWAY].clone(),
        names: system.names.clone(),
        ..settings_for(&system, &[]).await
    })
    .await;
    let admin = gateway
        .token(&system.admin.email, &system.admin.password)
        .await;
    let feed = feed_token(&gateway, &admin).await;
    let sku = format!("FEED-{}", &Uuid::new_v4().simple().to_string()[..8]).to_ascii_uppercase();
    let product = ProductUpdatedV1 {
        sku: sku.clone(),
        price_cents: 450,
        version: 1,
        ..ProductUpdatedV1::sample()
    };
    let event = events_schema::envelope("warehouse-feed", &product);
    let body = serde_json::to_value(&event).unwrap();
    let (status, _, answer) = gateway
        .call(Method::POST, "/api/events", Some(&feed), Some(&body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    let copy = format!("/cache/products/{sku}");
    system
        .eventually("orders caches the ingested product", || async {
            assert_no_dead_letters(&system, "orders").await;
            let (status, _) = system
                .api
                .call(Method::GET, "orders", &copy, None, &[])
                .await
                .unwrap();
            status.is_success()
        })
        .await;
    let cached = system.api.get("orders", &copy).await.unwrap();
    assert_eq!(cached["price_cents"], 450, "{cached}");
    assert_eq!(cached["version"], 1, "{cached}");
    let attempts = inbox_attempts(&system, "orders", event.id).await;
    assert_eq!(attempts.len(), 1, "orders handled it once: {attempts:?}");
    let delivered = system.env.drain(&observed).await;
    assert_eq!(delivered.len(), 1, "published once");
    let publisher = delivered[0]
        .properties
        .user_id()
        .as_ref()
        .map(|user| user.as_str());
    assert_eq!(
        publisher,
        Some(system.names.broker_user(GATEWAY).as_str()),
        "the broker vouches that the gateway's own user published it"
    );
    let published: Value = serde_json::from_slice(&delivered[0].data).unwrap();
    assert_eq!(published["id"], event.id.to_string());
    let source = published["source"].as_str().unwrap_or_default();
    assert!(
        source.starts_with("/clients/client-") && source != event.source,
        "the source is the client's, from its token, not the body's {}: {source}",
        event.source
    );
    assert_eq!(answer["source"], source, "the answer tells the producer");
    assert_no_dead_letters(&system, "orders").await;
    gateway.stop().await;
    system.stop().await;
}
