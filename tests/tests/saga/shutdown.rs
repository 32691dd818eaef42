//! Stopping services while orders flow: the relay stops last, so what the HTTP API and the
//! consumer's last batch committed is sent before the process ends.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ALL, start};

#[tokio::test]
async fn services_stopped_mid_flow_leave_nothing_unsent() {
    let mut system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("FR", 1_000_000_000).await;
    let sku = system.product(100, 100_000).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;

    let orders = futures_util::future::join_all(
        (0..60).map(|_| system.place(&user, json!([{ "sku": sku, "quantity": 1 }]))),
    )
    .await;
    assert_eq!(orders.len(), 60);
    // Every service is busy with the saga when the stop comes.
    system.stop_services().await;

    let unsent = system.unsent(&ALL).await;
    assert!(unsent.values().all(|count| *count == 0), "{unsent:?}");
}
