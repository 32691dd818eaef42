use std::time::Duration;

use conveyor::{ConsumerOptions, Publisher};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use conveyor_testkit::{TestEnv, event};

#[tokio::test]
async fn the_consumer_span_continues_the_producer_trace() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let producer_span = tracing::info_span!("place order");
    let producer_trace = producer_span
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();

    publisher
        .publish(&event(1))
        .instrument(producer_span)
        .await
        .unwrap();

    env.wait_for_handled(1, Duration::from_secs(10)).await;
    consumer.stop().await;
    let consumer_trace: Option<String> = sqlx::query_scalar("SELECT trace_id FROM handled")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(consumer_trace.as_deref(), Some(producer_trace.as_str()));
}
