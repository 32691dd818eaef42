//! Publishing with publisher confirms: many messages in flight, one wait for all of them,
//! and an error for each way the broker can refuse one.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use lapin::{Confirmation, PublisherConfirm};
use tokio::sync::Mutex;

use crate::amqp::{AmqpConfig, ConnectError};
use crate::backoff::Backoff;
use crate::contract::{Contract, ContractViolation};
use crate::envelope::{CLOUDEVENTS_CONTENT_TYPE, Envelope, EnvelopeHead};
use crate::headers;
use crate::topology::Names;
use crate::trace_context::{self, TraceHeaders};

/// AMQP delivery mode that makes the broker write the message to disk.
const PERSISTENT: u8 = 2;

/// The longest a failed publish waits for the broker's reason to reach the pending confirms.
const WHY_CLOSED_TIMEOUT: Duration = Duration::from_secs(1);

/// A message ready for the broker.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The exchange it is published to.
    pub exchange: String,
    /// The routing key it is published with (an event's type).
    pub routing_key: String,
    /// The message body: an envelope's JSON.
    pub body: Vec<u8>,
    /// Its AMQP properties; [`ConfirmChannel`] adds `user_id` when sending it.
    pub properties: BasicProperties,
}

impl OutgoingMessage {
    /// An event for `conveyor.events`, routed by its type, with the AMQP properties mirroring
    /// the envelope and the trace context in its headers.
    pub fn event(names: &Names, envelope: &Envelope, trace: &TraceHeaders) -> Self {
        let head = EventHead {
            id: envelope.id,
            event_type: &envelope.event_type,
            service: envelope.service(),
            correlation_id: envelope.correlationid,
            time: envelope.time,
        };
        Self {
            exchange: names.events_exchange(),
            routing_key: envelope.event_type.clone(),
            properties: event_properties(&head, trace),
            body: envelope.to_bytes(),
        }
    }

    /// An event stored as envelope bytes (an outbox row) whose head was read, sent as it
    /// is: the data is not decoded.
    pub(crate) fn stored_event(
        names: &Names,
        stored: &EnvelopeHead,
        body: Vec<u8>,
        trace: &TraceHeaders,
    ) -> Self {
        let head = EventHead {
            id: stored.id,
            event_type: &stored.event_type,
            service: stored.service(),
            correlation_id: stored.correlationid,
            time: stored.time,
        };
        Self {
            exchange: names.events_exchange(),
            routing_key: stored.event_type.clone(),
            properties: event_properties(&head, trace),
            body,
        }
    }

    fn message_id(&self) -> String {
        self.properties
            .message_id()
            .as_ref()
            .map_or_else(|| "(no id)".to_owned(), |id| id.to_string())
    }
}

/// The envelope attributes that AMQP properties mirror.
struct EventHead<'a> {
    id: uuid::Uuid,
    event_type: &'a str,
    service: &'a str,
    correlation_id: uuid::Uuid,
    time: chrono::DateTime<chrono::Utc>,
}

fn event_properties(head: &EventHead<'_>, trace: &TraceHeaders) -> BasicProperties {
    let mut amqp_headers = FieldTable::default();
    for (key, value) in trace {
        headers::set_str(&mut amqp_headers, key, value);
    }
    let timestamp = u64::try_from(head.time.timestamp()).unwrap_or_default();
    BasicProperties::default()
        .with_message_id(head.id.to_string().into())
        .with_type(head.event_type.into())
        .with_app_id(head.service.into())
        .with_correlation_id(head.correlation_id.to_string().into())
        .with_timestamp(timestamp)
        .with_content_type(CLOUDEVENTS_CONTENT_TYPE.into())
        .with_delivery_mode(PERSISTENT)
        .with_headers(amqp_headers)
}

/// Why a publish did not end with the broker holding the message.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// An event breaks the contract; none of the events was sent.
    #[error("event {event_id} breaks its contract, so it was not sent: {violation}")]
    Contract {
        /// The id of the event at fault.
        event_id: String,
        /// What the event breaks.
        violation: ContractViolation,
    },
    /// No broker could be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The channel or connection failed: messages without a confirm may not be stored.
    #[error(
        "the broker connection failed while publishing: {0}. Messages without a confirm may not have been stored; publish them again."
    )]
    Broker(#[from] lapin::Error),
    /// The broker refused (nacked) a message: it was not stored.
    #[error(
        "the broker refused (nacked) message {message_id} for {exchange} with routing key {routing_key}: it was not stored. Retry later; if it persists, check the broker's disk and memory alarms."
    )]
    Nacked {
        /// The id of the message refused.
        message_id: String,
        /// The exchange it was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
    },
    /// The exchange does not exist on the broker (or in the connection's vhost).
    #[error(
        "exchange {exchange} does not exist on this broker (or vhost): run `conveyor topology apply`, or check AMQP_URL's vhost"
    )]
    ExchangeNotFound {
        /// The exchange that is missing.
        exchange: String,
    },
    /// No queue took a (mandatory) message: the broker returned it, unstored.
    #[error(
        "no queue took message {message_id} published to {exchange} with routing key {routing_key}: the topology is missing. Run `conveyor topology apply`."
    )]
    Unroutable {
        /// The id of the message returned.
        message_id: String,
        /// The exchange it was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
    },
}

impl PublishError {
    /// Whether trying again on a fresh connection may succeed.
    pub fn is_connection_failure(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Broker(_))
    }

    /// A broker error, named when it is a missing exchange: the broker closes the channel
    /// with NOT_FOUND, which retrying cannot mend.
    fn from_broker(error: lapin::Error, exchange: &str) -> Self {
        if crate::amqp::is_not_found(&error) {
            return Self::ExchangeNotFound {
                exchange: exchange.to_owned(),
            };
        }
        Self::Broker(error)
    }
}

/// A channel in confirm mode. Every message it sends carries `user_id`: the broker user of
/// the connection, which the broker checks, so consumers know who published it.
pub struct ConfirmChannel {
    channel: Channel,
    user: ShortString,
}

impl ConfirmChannel {
    /// Opens a channel on `connection`, authenticated as `user` ([`AmqpConfig::user`]),
    /// and turns publisher confirms on.
    ///
    /// # Errors
    /// The broker's error when the channel cannot be opened.
    pub async fn open(connection: &Connection, user: &str) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        Self::enable(channel, user).await
    }

    /// Turns confirms on for an existing channel (a consumer's, for its retries and dead
    /// letters) of a connection authenticated as `user`.
    ///
    /// # Errors
    /// The broker's error when confirm mode cannot be selected.
    pub async fn enable(channel: Channel, user: &str) -> Result<Self, lapin::Error> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            user: ShortString::from(user),
        })
    }

    /// The channel itself, for what is not publishing (acks, consuming, closing it).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends every message, then waits for all the confirms: the broker holds every message
    /// once this returns `Ok`. Messages are `mandatory`, so one no queue takes is an error
    /// rather than a silent drop.
    ///
    /// # Errors
    /// [`PublishError`] for the first message the broker did not take; some of the others may
    /// have been stored, so callers publish again (consumers dedupe by message id).
    pub async fn publish_all(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let outcomes = self.publish_each(messages).await?;
        outcomes
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Sends every message, then waits for all the confirms, and says for each whether the
    /// broker took it: a nack or an unroutable message is that message's own `Err`.
    ///
    /// # Errors
    /// [`PublishError`] when the channel or connection failed: what was not confirmed may
    /// or may not be stored.
    pub async fn publish_each(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), PublishError>>, PublishError> {
        let pending = self.send_all(messages).await?;
        Self::confirmations(pending, messages).await
    }

    /// Sends every message without waiting for its confirm; the confirms are awaited with
    /// [`ConfirmChannel::confirmations`], so the next messages can go out meanwhile.
    ///
    /// # Errors
    /// [`PublishError`] when the channel or connection failed.
    pub async fn send_all(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<PublisherConfirm>, PublishError> {
        let mut pending: Vec<PublisherConfirm> = Vec::with_capacity(messages.len());
        for message in messages {
            let confirm = self
                .channel
                .basic_publish(
                    message.exchange.as_str().into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.body,
                    message.properties.clone().with_user_id(self.user.clone()),
                )
                .await;
            match confirm {
                Ok(confirm) => pending.push(confirm),
                Err(error) => {
                    let error = Self::why_closed(error, pending).await;
                    return Err(PublishError::from_broker(error, &message.exchange));
                }
            }
        }
        Ok(pending)
    }

    /// A publish on a channel the broker is closing fails with the channel's state alone;
    /// the broker's reason (a PRECONDITION_FAILED for one message it will never take, say)
    /// rejects the confirms still pending, at once.
    async fn why_closed(error: lapin::Error, pending: Vec<PublisherConfirm>) -> lapin::Error {
        if !matches!(error.kind(), lapin::ErrorKind::InvalidChannelState(..)) {
            return error;
        }
        let reason = async {
            for confirm in pending {
                if let Err(reason) = confirm.await {
                    return Some(reason);
                }
            }
            None
        };
        match tokio::time::timeout(WHY_CLOSED_TIMEOUT, reason).await {
            Ok(Some(reason)) => reason,
            _ => error,
        }
    }

    /// Waits for the confirms of `messages` sent with [`ConfirmChannel::send_all`] and says
    /// for each whether the broker took it.
    ///
    /// # Errors
    /// [`PublishError`] when the channel or connection failed.
    pub async fn confirmations(
        pending: Vec<PublisherConfirm>,
        messages: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), PublishError>>, PublishError> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for (confirm, message) in pending.into_iter().zip(messages) {
            let confirmation = confirm
                .await
                .map_err(|error| PublishError::from_broker(error, &message.exchange))?;
            let error = match confirmation {
                Confirmation::Ack(None) | Confirmation::NotRequested => {
                    outcomes.push(Ok(()));
                    continue;
                }
                // When the broker confirms several messages at once, lapin may attach the
                // returned message to another one's confirm: name the message that came back.
                Confirmation::Ack(Some(returned)) => PublishError::Unroutable {
                    message_id: returned
                        .delivery
                        .properties
                        .message_id()
                        .as_ref()
                        .map_or_else(|| message.message_id(), ToString::to_string),
                    exchange: returned.delivery.exchange.to_string(),
                    routing_key: returned.delivery.routing_key.to_string(),
                },
                Confirmation::Nack(_) => PublishError::Nacked {
                    message_id: message.message_id(),
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                },
            };
            outcomes.push(Err(error));
        }
        Ok(outcomes)
    }
}

struct Session {
    _connection: Connection,
    channel: ConfirmChannel,
}

/// A producer's publisher: reconnects by itself and returns only once the broker confirmed.
///
/// For events that must never be lost together with a database change, write them to the
/// [`crate::Outbox`] instead; this is for producers without a database (the CLI, bridges).
pub struct Publisher {
    amqp: AmqpConfig,
    names: Names,
    session: Mutex<Option<Session>>,
    max_attempts: u32,
    contract: Option<Arc<dyn Contract>>,
}

impl Publisher {
    /// Connects at once, so a wrong URL is reported before the first event.
    ///
    /// # Errors
    /// [`PublishError::Connect`] when the broker cannot be reached.
    pub async fn connect(amqp: AmqpConfig, names: Names) -> Result<Self, PublishError> {
        let session = open_session(&amqp).await?;
        Ok(Self {
            amqp,
            names,
            session: Mutex::new(Some(session)),
            max_attempts: 5,
            contract: None,
        })
    }

    /// Checks every event against `contract` before it is sent.
    #[must_use]
    pub fn with_contract(mut self, contract: Arc<dyn Contract>) -> Self {
        self.contract = Some(contract);
        self
    }

    /// Publishes one event and waits for the broker's confirm.
    ///
    /// # Errors
    /// [`PublishError`] after the retries on connection failures are used up, or at once when
    /// the broker refuses the event.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
        self.publish_events(std::slice::from_ref(envelope)).await
    }

    /// Publishes events with all their confirms in flight at once.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    #[tracing::instrument(name = "publish", skip_all, fields(events = envelopes.len()))]
    pub async fn publish_events(&self, envelopes: &[Envelope]) -> Result<(), PublishError> {
        if let Some(contract) = &self.contract {
            for envelope in envelopes {
                contract
                    .check(envelope)
                    .map_err(|violation| PublishError::Contract {
                        event_id: envelope.id.to_string(),
                        violation,
                    })?;
            }
        }
        let trace = trace_context::capture_current();
        let messages: Vec<_> = envelopes
            .iter()
            .map(|envelope| OutgoingMessage::event(&self.names, envelope, &trace))
            .collect();
        self.publish_messages(&messages).await?;
        let published = &crate::metrics::metrics().events_published;
        for envelope in envelopes {
            published
                .with_label_values(&[envelope.event_type.as_str()])
                .inc();
        }
        Ok(())
    }

    /// Publishes prepared messages, reconnecting and publishing again on connection failures.
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    pub async fn publish_messages(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let mut backoff = Backoff::default();
        let mut attempt = 1;
        loop {
            match self.try_publish(messages).await {
                Err(error) if error.is_connection_failure() && attempt < self.max_attempts => {
                    tracing::warn!(%error, attempt, "Publishing failed; reconnecting.");
                    tokio::time::sleep(backoff.next_delay()).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_publish(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let mut guard = self.session.lock().await;
        let session = match guard.take() {
            Some(session) if session.channel.channel().status().connected() => session,
            _ => open_session(&self.amqp).await?,
        };
        let result = session.channel.publish_all(messages).await;
        if !matches!(result, Err(ref error) if error.is_connection_failure()) {
            *guard = Some(session);
        }
        result
    }
}

async fn open_session(amqp: &AmqpConfig) -> Result<Session, PublishError> {
    let connection = amqp.connect().await?;
    let channel = ConfirmChannel::open(&connection, &amqp.user()).await?;
    Ok(Session {
        _connection: connection,
        channel,
    })
}
