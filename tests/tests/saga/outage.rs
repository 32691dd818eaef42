//! A broker outage while orders wait: the saga deadline counts time the system could work,
//! so the outage itself cancels nothing.

use std::time::Duration;

use crate::helpers::order_without_shipping;

#[tokio::test]
async fn a_broker_outage_longer_than_the_deadline_cancels_no_order() {
    // A paid order stays pending until its 3-second deadline.
    let (system, order_id) = order_without_shipping(Duration::from_secs(3)).await;

    // The broker goes away for this vhost for twice the deadline: nobody may connect, and
    // every open connection is closed.
    system.cut_off_the_broker();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = system
        .api
        .get("orders", &format!("/orders/{order_id}"))
        .await
        .unwrap();
    system.restore_the_broker();

    assert_eq!(
        during["status"], "pending",
        "cancelled by the outage: {during}"
    );
    // Once the broker is back the deadline still holds: shipping never answers.
    let order = system.final_order(&order_id).await;
    assert_eq!(order["reason"], "deadline-passed");
    system.wait_until_refunded(&order_id).await;
    system.stop().await;
}
