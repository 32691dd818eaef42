
/// A confirmed order sends one notification, about that order and caused by its event.
#[tokio::test]
async fn a_confirmed_order_sends_one_notification() -> anyhow::Result<()> {
    let database = TestDatabase::migrated(&MIGRATOR).await;
    let mut harness = Harness::new(consumer(&Names::default())?, database.pool()).await?;
    let confirmed: OrderConfirmedV1 = example()?;
    let event = harness.envelope("orders", confirmed.order_id, &confirmed);

    let emitted = harness.deliver(&event).await?.handled()?;

    emitted.one::<events_schema::notifications::NotificationSentV1>()?;
    let sent = emitted.answer_to(&event)?;
    let order = confirmed.order_id.to_string();
    assert_eq!(sent.subject.as_deref(), Some(order.as_str()));
    Ok(())
}
