
/// A confirmed order grants one reward, an event of the service's own type.
#[tokio::test]
async fn a_confirmed_order_grants_one_reward() -> anyhow::Result<()> {
    let database = TestDatabase::migrated(&MIGRATOR).await;
    let mut harness = Harness::new(consumer(&Names::default())?, database.pool()).await?;
    let confirmed: OrderConfirmedV1 = example()?;
    let event = harness.envelope("orders", confirmed.order_id, &confirmed);

    let emitted = harness.deliver(&event).await?.handled()?;

    emitted.one::<loyalty_service::events::RewardGrantedV1>()?;
    let granted = emitted.answer_to(&event)?;
    let order = confirmed.order_id.to_string();
    assert_eq!(granted.subject.as_deref(), Some(order.as_str()));
    Ok(())
}
