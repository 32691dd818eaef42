//! The transactional outbox: events are written in the same transaction as the change that
//! caused them, and the [`crate::OutboxRelay`] publishes them after commit, at once or when
//! they are due (`schedule`).

mod schedule;

use std::sync::Arc;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::contract::{Contract, ContractViolation};
use crate::envelope::Envelope;
use crate::trace_context;

/// An event could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// An event breaks the contract; none of the events was written.
    #[error("event {event_id} breaks its contract, so it was not written: {violation}")]
    Contract {
        /// The id of the event at fault.
        event_id: Uuid,
        /// What the event breaks.
        violation: ContractViolation,
    },
    /// The insert failed; none of the events was written.
    #[error("could not write event {event_id} ({event_type}) to the outbox: {source}")]
    Database {
        /// The id of the first event written together.
        event_id: Uuid,
        /// The type of that first event.
        event_type: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// Cancelling scheduled events failed; none was cancelled.
    #[error("could not cancel the scheduled {event_type} events of subject {subject}: {source}")]
    Cancel {
        /// The type of the events to cancel.
        event_type: String,
        /// Their subject.
        subject: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
}

/// Writes events into `conveyor.outbox` inside the caller's transaction.
#[derive(Clone, Default)]
pub struct Outbox {
    contract: Option<Arc<dyn Contract>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("checks_contract", &self.contract.is_some())
            .finish()
    }
}

impl Outbox {
    /// An outbox that writes events without checking them against a contract.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks every event against `contract` before writing it.
    #[must_use]
    pub fn with_contract(mut self, contract: Arc<dyn Contract>) -> Self {
        self.contract = Some(contract);
        self
    }

    fn check(&self, envelopes: &[Envelope]) -> Result<(), OutboxError> {
        let Some(contract) = &self.contract else {
            return Ok(());
        };
        for envelope in envelopes {
            contract
                .check(envelope)
                .map_err(|violation| OutboxError::Contract {
                    event_id: envelope.id,
                    violation,
                })?;
        }
        Ok(())
    }

    /// Adds `envelope` within the transaction `tx`: it is published if and only if `tx`
    /// commits. The current span's trace context travels with it.
    ///
    /// # Errors
    /// [`OutboxError`] when the insert fails; the caller's transaction should be rolled back.
    pub async fn add(&self, tx: &mut PgConnection, envelope: &Envelope) -> Result<(), OutboxError> {
        self.add_all(tx, std::slice::from_ref(envelope)).await
    }

    /// Adds several events with one statement.
    ///
    /// # Errors
    /// As [`Outbox::add`].
    pub async fn add_all(
        &self,
        tx: &mut PgConnection,
        envelopes: &[Envelope],
    ) -> Result<(), OutboxError> {
        let Some(first) = envelopes.first() else {
            return Ok(());
        };
        self.check(envelopes)?;
        let trace = serde_json::to_value(trace_context::capture_current()).unwrap_or_default();
        let ids: Vec<Uuid> = envelopes.iter().map(|envelope| envelope.id).collect();
        let types: Vec<&str> = envelopes
            .iter()
            .map(|envelope| envelope.event_type.as_str())
            .collect();
        let payloads: Vec<Vec<u8>> = envelopes.iter().map(Envelope::to_bytes).collect();
        sqlx::query(
            "INSERT INTO conveyor.outbox (event_id, event_type, payload, trace)
             SELECT id, event_type, payload, $4 FROM UNNEST($1::uuid[], $2::text[], $3::bytea[])
                 AS new_events(id, event_type, payload)",
        )
        .bind(&ids)
        .bind(&types)
        .bind(&payloads)
        .bind(&trace)
        .execute(tx)
        .await
        .map_err(|source| OutboxError::Database {
            event_id: first.id,
            event_type: first.event_type.clone(),
            source,
        })?;
        Ok(())
    }
}
