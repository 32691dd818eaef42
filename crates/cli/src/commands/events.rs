//! `conveyor events publish|tail`.

use anyhow::Context;
use clap::Subcommand;
use conveyor::{AmqpConfig, Envelope, Names, Publisher};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Publish one event to conveyor.events (<prefix>.conveyor.events when
    /// CONVEYOR_NAME_PREFIX is set) and wait for the broker's confirm.
    ///
    /// Prints the new event's id. Example:
    /// conveyor events publish --type order.created --data '{"order_id": "…"}'
    Publish {
        /// The event type, which is also its routing key (e.g. order.created).
        #[arg(long = "type")]
        event_type: String,
        /// The event's data, a JSON object.
        #[arg(long)]
        data: String,
        /// The flow this event belongs to; a new flow (the event's own id) if omitted.
        #[arg(long)]
        correlation_id: Option<Uuid>,
        /// The aggregate the event is about (an order id, a sku).
        #[arg(long)]
        subject: Option<String>,
        /// The emitting service, written to `source` as /services/<name>.
        #[arg(long, default_value = "cli")]
        source: String,
    },
    /// Print events as they pass through conveyor.events (<prefix>.conveyor.events when
    /// CONVEYOR_NAME_PREFIX is set), until Ctrl-C.
    ///
    /// Uses a temporary queue of its own, so it takes nothing from any service.
    Tail {
        /// Routing pattern: `order.*`, `*.cancelled`, `#` for all.
        #[arg(long = "type", default_value = "#")]
        pattern: String,
        /// One JSON envelope per line instead of a summary line.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
}

pub(crate) async fn run(command: EventsCommand) -> anyhow::Result<()> {
    let names = Names::from_env()?;
    match command {
        EventsCommand::Publish {
            event_type,
            data,
            correlation_id,
            subject,
            source,
        } => {
            let envelope = build_event(&source, &event_type, &data, correlation_id, subject)?;
            publish(&names, &envelope).await
        }
        EventsCommand::Tail {
            pattern,
            json,
            limit,
        } => tail(&names, &pattern, json, limit).await,
    }
}

fn build_event(
    source: &str,
    event_type: &str,
    data: &str,
    correlation_id: Option<Uuid>,
    subject: Option<String>,
) -> anyhow::Result<Envelope> {
    anyhow::ensure!(
        !event_type.trim().is_empty() && !event_type.contains(['*', '#']),
        "--type must name one event type, like order.created"
    );
    let data: serde_json::Value =
        serde_json::from_str(data).with_context(|| format!("--data is not valid JSON: {data}"))?;
    anyhow::ensure!(
        data.is_object(),
        "--data must be a JSON object, like '{{\"id\": 1}}'"
    );
    let mut envelope = Envelope::new(source, event_type, data);
    if let Some(correlation_id) = correlation_id {
        envelope = envelope.with_correlation_id(correlation_id);
    }
    if let Some(subject) = subject {
        envelope = envelope.with_subject(subject);
    }
    Ok(envelope)
}

async fn publish(names: &Names, envelope: &Envelope) -> anyhow::Result<()> {
    let contract = events_schema::EventContract::shared()?;
    // Refuse a bad event before touching the broker; the publisher checks again on send.
    contract.validate_envelope(envelope)?;
    let publisher = Publisher::connect(
        AmqpConfig::from_env("conveyor events publish"),
        names.clone(),
    )
    .await?
    .with_contract(contract);
    publisher.publish(envelope).await?;
    println!("{}", envelope.id);
    Ok(())
}

async fn tail(names: &Names, pattern: &str, json: bool, limit: Option<u64>) -> anyhow::Result<()> {
    let connection = AmqpConfig::from_env("conveyor events tail")
        .connect()
        .await?;
    let channel = connection.create_channel().await?;
    // A paused or slow terminal must not make the broker or this process buffer without
    // bound: a small prefetch, and a queue that drops its oldest events past 10,000.
    channel.basic_qos(100, BasicQosOptions::default()).await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(10_000));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("drop-head".into()),
    );
    // Server-named, exclusive and auto-deleted: it vanishes with this command.
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            names.events_exchange().as_str().into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot bind to {}: run `conveyor topology apply` first",
                names.events_exchange()
            )
        })?;
    let mut deliveries = channel
        .basic_consume(
            queue.name().clone(),
            "conveyor-tail".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    eprintln!(
        "Tailing {} for {pattern:?}; Ctrl-C stops.",
        names.events_exchange()
    );
    let mut seen = 0;
    while limit.is_none_or(|limit| seen < limit) {
        let next = tokio::select! {
            next = deliveries.next() => next,
            () = conveyor::shutdown::signal() => break,
        };
        let Some(delivery) = next else { break };
        let delivery = delivery?;
        println!(
            "{}",
            crate::terminal::printable(&describe(&delivery.data, json))
        );
        delivery.ack(BasicAckOptions::default()).await?;
        seen += 1;
    }
    connection.close(200, "tail finished".into()).await?;
    Ok(())
}

fn describe(body: &[u8], json: bool) -> String {
    match Envelope::from_bytes(body) {
        Ok(envelope) if json => serde_json::to_string(&envelope).unwrap_or_default(),
        Ok(envelope) => format!(
            "{} {} id={} subject={} correlation={} {}",
            envelope
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            envelope.event_type,
            envelope.id,
            envelope.subject.as_deref().unwrap_or("-"),
            envelope.correlationid,
            envelope.data
        ),
        Err(error) => format!(
            "(not an envelope: {error}) {}",
            String::from_utf8_lossy(body)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_publish_arguments_are_refused_with_the_reason() {
        let error = build_event("cli", "order.created", "{oops", None, None).unwrap_err();
        assert!(format!("{error:#}").contains("--data is not valid JSON"));
        let error = build_event("cli", "order.created", "[1]", None, None).unwrap_err();
        assert!(error.to_string().contains("must be a JSON object"));
        let error = build_event("cli", "order.*", "{}", None, None).unwrap_err();
        assert!(error.to_string().contains("one event type"));
    }

    #[test]
    fn a_given_correlation_id_is_kept() {
        let flow = Uuid::now_v7();
        let event =
            build_event("cli", "order.created", "{}", Some(flow), Some("o-1".into())).unwrap();
        assert_eq!(event.correlationid, flow);
        assert_eq!(event.subject.as_deref(), Some("o-1"));
        assert_eq!(event.service(), "cli");
    }
}
