use std::time::Duration;

use conveyor::{ConsumerOptions, Publisher};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use conveyor_testkit::{TestEnv, event};

/// A producer's span, and its trace id as the consumer records it.
fn producer_span() -> (tracing::Span, String) {
    let span = tracing::info_span!("place order");
    let trace = span.context().span().span_context().trace_id().to_string();
    (span, trace)
}

#[tokio::test]
async fn the_consumer_span_continues_the_producer_trace() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(ConsumerOptions::default()).await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let (producer_span, producer_trace) = producer_span();

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

/// A retry is the same event on the same trace, and a dead letter keeps the trace context,
/// so an operator (or a replay) can find the request that started it.
#[tokio::test]
async fn the_trace_survives_a_retry_and_reaches_the_dead_letter() {
    let env = TestEnv::new().await;
    let consumer = env.start_consumer(conveyor_testkit::fast_retries()).await;
    let publisher = Publisher::connect(env.amqp.clone(), env.names.clone())
        .await
        .unwrap();
    let (producer_span, producer_trace) = producer_span();
    let flaky = conveyor_testkit::event_with(
        1,
        serde_json::json!({ "n": 1, "behaviour": { "transient-times": 1 } }),
    );
    let doomed =
        conveyor_testkit::event_with(2, serde_json::json!({ "n": 2, "behaviour": "permanent" }));

    publisher
        .publish_events(&[flaky, doomed])
        .instrument(producer_span)
        .await
        .unwrap();

    env.wait_for_handled(1, Duration::from_secs(10)).await;
    let letters_queue = env.names.dead_letter_queue(conveyor_testkit::SERVICE);
    let arrived = conveyor_testkit::wait_until(Duration::from_secs(10), || async {
        env.queue_len(&letters_queue).await == 1
    })
    .await;
    consumer.stop().await;
    assert!(arrived, "the permanent failure is dead-lettered");
    let (attempts, trace): (i32, Option<String>) =
        sqlx::query_as("SELECT previous_attempts, trace_id FROM handled")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 1, "handled on the retry");
    assert_eq!(trace.as_deref(), Some(producer_trace.as_str()));
    let letter = env.drain(&letters_queue).await.remove(0);
    let headers = letter.properties.headers().clone().unwrap_or_default();
    let traceparent =
        conveyor::headers::get_str(&headers, conveyor::headers::TRACEPARENT).unwrap_or_default();
    assert!(
        traceparent.contains(&producer_trace),
        "the dead letter's traceparent {traceparent:?} is not on trace {producer_trace}"
    );
}
