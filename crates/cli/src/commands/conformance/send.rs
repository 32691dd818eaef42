//! How the suite sends: events as their owner, as a forger or with no `user_id`, each with a
//! publisher confirm, built as a producer outside Conveyor would build them.

use std::time::Duration;

use anyhow::Context as _;
use chrono::SecondsFormat;
use conveyor::{ConfirmChannel, OutgoingMessage};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Value, json};
use uuid::Uuid;

use super::EVENT_TYPE;
use super::letters::{APP_ID, CASE_HEADER};
use super::sandbox::Sandbox;

/// Who publishes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// The owner of the event's type, with its `user_id`.
    Owner,
    /// Another service's user, with its `user_id`: a forged source.
    Forger,
    /// An administrator, with no `user_id`: no known publisher.
    Anonymous,
}

/// One message to send.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) sender: Sender,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) body: Vec<u8>,
    pub(crate) properties: BasicProperties,
}

pub(crate) struct Senders {
    connections: Vec<Connection>,
    owner: ConfirmChannel,
    forger: ConfirmChannel,
    anonymous: Channel,
}

impl Senders {
    /// # Errors
    /// When a user cannot connect.
    pub(crate) async fn open(sandbox: &Sandbox) -> anyhow::Result<Self> {
        let owner = sandbox.owner.amqp.connect().await?;
        let forger = sandbox.forger.amqp.connect().await?;
        let admin = sandbox.admin.connect().await?;
        let anonymous = admin.create_channel().await?;
        anonymous
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            owner: ConfirmChannel::open(&owner, &sandbox.owner.name).await?,
            forger: ConfirmChannel::open(&forger, &sandbox.forger.name).await?,
            anonymous,
            connections: vec![owner, forger, admin],
        })
    }

    /// Sends `messages` in order, each confirmed by the broker; a run of one sender's
    /// messages goes out at once, its confirms awaited together.
    ///
    /// # Errors
    /// When the broker refuses one.
    pub(crate) async fn send(&self, messages: &[Outgoing]) -> anyhow::Result<()> {
        for run in messages.chunk_by(|one, next| one.sender == next.sender) {
            let outgoing: Vec<OutgoingMessage> = run
                .iter()
                .map(|message| OutgoingMessage {
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                    body: message.body.clone(),
                    properties: message.properties.clone(),
                })
                .collect();
            match run[0].sender {
                Sender::Owner => self.owner.publish_all(&outgoing).await?,
                Sender::Forger => self.forger.publish_all(&outgoing).await?,
                Sender::Anonymous => {
                    for message in outgoing {
                        self.send_anonymously(message).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// With no `user_id`, which [`ConfirmChannel`] would add.
    async fn send_anonymously(&self, message: OutgoingMessage) -> anyhow::Result<()> {
        let confirm = self
            .anonymous
            .basic_publish(
                message.exchange.as_str().into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &message.body,
                message.properties,
            )
            .await?
            .await?;
        anyhow::ensure!(
            confirm.is_ack(),
            "the broker refused a message of the suite"
        );
        Ok(())
    }

    pub(crate) async fn close(self) {
        for connection in &self.connections {
            conveyor::close_within(connection, "sent", Duration::from_secs(5)).await;
        }
    }
}

/// `data` of [`EVENT_TYPE`]: its schema's example, about a new order, with the subject's
/// instructions in a field the schema does not list (schemas allow such fields).
pub(crate) fn order_confirmed(instructions: Value) -> anyhow::Result<Value> {
    let version = latest_version();
    let schema = events_schema::schema_for(EVENT_TYPE, version)
        .with_context(|| format!("no schema for {EVENT_TYPE} v{version}"))?;
    let schema: Value = serde_json::from_str(schema.text)?;
    let mut data = schema["examples"][0].clone();
    data["order_id"] = json!(Uuid::now_v7());
    data["conformance"] = instructions;
    Ok(data)
}

/// The newest version of [`EVENT_TYPE`], which producers send.
pub(crate) fn latest_version() -> u32 {
    events_schema::SCHEMAS
        .iter()
        .filter(|file| file.event_type == EVENT_TYPE)
        .map(|file| file.version)
        .max()
        .unwrap_or(1)
}

/// A CloudEvents envelope in structured JSON mode, as a producer outside Conveyor sends it.
pub(crate) fn envelope(id: Uuid, event_type: &str, data: &Value) -> Vec<u8> {
    let subject = data.get("order_id").cloned().unwrap_or(Value::Null);
    let envelope = json!({
        "specversion": "1.0",
        "id": id,
        "source": "/services/orders",
        "type": event_type,
        "time": chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "dataschema": events_schema::dataschema_forms(event_type, latest_version())[0],
        "correlationid": Uuid::now_v7(),
        "subject": subject,
        "data": data,
    });
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// The properties every case's message carries: what a dead letter must keep.
pub(crate) fn properties(id: Uuid, case: &str, event_type: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(CASE_HEADER),
        AMQPValue::LongString(LongString::from(case.as_bytes().to_vec())),
    );
    BasicProperties::default()
        .with_message_id(id.to_string().into())
        .with_content_type(conveyor::CLOUDEVENTS_CONTENT_TYPE.into())
        .with_type(event_type.into())
        .with_app_id(APP_ID.into())
        .with_delivery_mode(2)
        .with_headers(headers)
}
