//! Acknowledging a handled batch. Successes are acknowledged at once on the consuming
//! channel. A failed delivery is acknowledged only once its retry or dead-letter copy is
//! confirmed; those copies go out on a channel of another connection and are awaited in the
//! background, so a broker alarm that blocks publishers holds up only the failed deliveries
//! (within the prefetch window), never the acknowledgements of the rest. A copy the broker
//! nacks ("not stored, not now": a quorum queue electing a leader after a node died) is sent
//! again with backoff while its original stays unacknowledged, within the publish timeout;
//! past it the session resets and the originals return to the queue.

use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use lapin::options::BasicAckOptions;
use tokio::task::JoinSet;

use super::Registry;
use super::batch::Incoming;
use super::outcome::Outcome;
use super::session_error::SessionError;
use crate::backoff::Backoff;
use crate::publisher::{ConfirmChannel, OutgoingMessage, PublishError};

pub(crate) struct Settler {
    acks: Channel,
    failures: Arc<ConfirmChannel>,
    timeout: Duration,
    /// Copies awaiting their confirms; each acknowledges its deliveries when confirmed.
    pending: JoinSet<Result<(), SessionError>>,
}

impl Settler {
    pub(crate) fn new(acks: Channel, failures: ConfirmChannel, timeout: Duration) -> Self {
        Self {
            acks,
            failures: Arc::new(failures),
            timeout,
            pending: JoinSet::new(),
        }
    }

    /// Acknowledges what succeeded and sends the copies of what failed.
    pub(crate) async fn settle(
        &mut self,
        registry: &Registry,
        batch: &[Incoming],
        outcomes: &[Outcome],
    ) -> Result<(), SessionError> {
        let mut copies = Vec::new();
        let mut failed_tags = Vec::new();
        for (outcome, incoming) in outcomes.iter().zip(batch) {
            if let Outcome::DeadLetter { kind, error, .. } = outcome {
                incoming.trace_dead_letter(&registry.service, *kind, error);
            }
            let delivery = &incoming.delivery;
            if let Some(copy) = outcome.message(&registry.names, &registry.service, delivery) {
                copies.push(copy);
                failed_tags.push(delivery.delivery_tag);
            }
        }
        let Some(last) = batch.last() else {
            return Ok(());
        };
        if copies.is_empty() && self.pending.is_empty() {
            // Nothing before it is unacknowledged: one acknowledgement covers the batch.
            let multiple = BasicAckOptions { multiple: true };
            self.acks
                .basic_ack(last.delivery.delivery_tag, multiple)
                .await?;
            return Ok(());
        }
        for incoming in batch {
            let tag = incoming.delivery.delivery_tag;
            if !failed_tags.contains(&tag) {
                self.acks.basic_ack(tag, BasicAckOptions::default()).await?;
            }
        }
        if !copies.is_empty() {
            let (acks, failures, timeout) =
                (self.acks.clone(), Arc::clone(&self.failures), self.timeout);
            self.pending.spawn(async move {
                tokio::time::timeout(timeout, publish_until_stored(&failures, copies))
                    .await
                    .map_err(|_| SessionError::PublishTimeout(timeout))??;
                for tag in failed_tags {
                    acks.basic_ack(tag, BasicAckOptions::default()).await?;
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Resolves when a batch of copies was confirmed and acknowledged, or failed (the
    /// session then resets; the unacknowledged deliveries return to the queue). Pending
    /// for ever while nothing is in flight.
    pub(crate) async fn next_confirmed(&mut self) -> Result<(), SessionError> {
        match self.pending.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(join_error)) => Err(SessionError::Worker(join_error.to_string())),
            None => std::future::pending().await,
        }
    }

    /// At shutdown: gives copies in flight up to `grace` to be confirmed (deliveries whose
    /// copy was not confirmed return to the queue; the inbox absorbs a copy that arrives too),
    /// then closes the channel they went out on. Left to be closed when dropped, its close
    /// would be queued behind its connection's, which lapin then logs as a connection error.
    pub(crate) async fn finish(mut self, grace: Duration) {
        let drain = async { while self.pending.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            self.pending.abort_all();
        }
        let close = self
            .failures
            .channel()
            .close(200, "consumer shutting down".into());
        let _ = tokio::time::timeout(grace, close).await;
    }
}

/// Sends copies until the broker has stored every one: a nacked or returned copy is sent
/// again after a growing pause.
///
/// # Errors
/// [`PublishError`] when the channel or connection fails.
async fn publish_until_stored(
    failures: &ConfirmChannel,
    mut copies: Vec<OutgoingMessage>,
) -> Result<(), PublishError> {
    let mut backoff = Backoff::default();
    loop {
        let outcomes = failures.publish_each(&copies).await?;
        let mut refused = Vec::new();
        let mut last_error = None;
        for (copy, outcome) in copies.into_iter().zip(outcomes) {
            if let Err(error) = outcome {
                refused.push(copy);
                last_error = Some(error);
            }
        }
        let Some(error) = last_error else {
            return Ok(());
        };
        tracing::warn!(%error, count = refused.len(), "The broker refused retry or dead-letter copies for now; sending them again.");
        copies = refused;
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
