//! Stopping services while orders flow: the relay stops last, so what the HTTP API and the
//! consumer's last batch committed is sent before the process ends.

use std::collections::BTreeMap;
use std::time::Duration;

use conveyor::Names;
use conveyor_testkit::TestEnv;
use system::ServiceName;

use crate::helpers::{ALL, start, start_as};

#[tokio::test]
async fn services_stopped_mid_flow_leave_nothing_unsent() {
    let mut system = start(&ALL, Duration::from_secs(30)).await;
    let (user, sku) = system.customer_and_product(100, 100_000).await;

    let orders = system.place_at_once(&user, &sku, 60).await;
    assert_eq!(orders.len(), 60);
    // Every service is busy with the saga when the stop comes.
    system.stop_services().await;

    let unsent = system.unsent(&ALL).await;
    assert!(unsent.values().all(|count| *count == 0), "{unsent:?}");
}

/// A broker that stops answering (a partition, a hung node) while orders flow holds up no
/// shutdown past its budget, and loses nothing: what payments could not send stays in its
/// outbox and goes out when it runs again with a broker that answers.
#[tokio::test]
async fn a_broker_that_stops_answering_holds_up_no_shutdown_and_loses_nothing() {
    let env = TestEnv::new().await;
    let (link, through_link) = env.freezable_link("payments through a link").await;
    let service_amqp = BTreeMap::from([(ServiceName::PAYMENTS, through_link)]);
    let mut system = start_as(
        env,
        &ALL,
        Duration::from_secs(120),
        Names::default(),
        service_amqp,
    )
    .await;
    let (user, sku) = system.customer_and_product(100, 100_000).await;

    let orders = system.place_at_once(&user, &sku, 30).await;
    // Payments' broker goes silent with the saga in full flow: its consumer, relay and
    // metrics sampler each wait on it somewhere.
    link.freeze();
    tokio::time::sleep(Duration::from_millis(500)).await;
    system.stop_services().await;
    // The broker finds the silent connections dead (as its heartbeats would, later) and
    // puts back what they held; payments comes back on a broker that answers.
    drop(link);
    system
        .restart(&ALL, |config| config.service_amqp.clear())
        .await;
    for order in &orders {
        let id = order["id"].as_str().unwrap();
        let order = system.final_order(id).await;
        assert_eq!(order["status"], "confirmed", "{order}");
        let payments = system.payments(id).await;
        assert!(
            payments.len() == 1 && payments[0]["status"] == "captured",
            "order {id} is charged once: {payments:?}"
        );
    }
    // Stopped on a broker that answers, every service flushes its outbox.
    system.stop_services().await;
    let unsent = system.unsent(&ALL).await;
    assert!(unsent.values().all(|count| *count == 0), "{unsent:?}");
}
