//! Each service's queues as the broker counts them, from one request to the management API:
//! nothing is read to count, so a million dead letters cost the same as none.

use std::collections::BTreeMap;

use conveyor::Names;
use serde::{Deserialize, Serialize};
use system::management::{ManagementApi, percent_encode};

/// One queue's figures.
#[derive(Debug, Deserialize)]
struct QueueInfo {
    name: String,
    #[serde(default)]
    messages_ready: u64,
    #[serde(default)]
    messages_unacknowledged: u64,
    #[serde(default)]
    consumers: u64,
}

/// A service's queues, summed by role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ServiceQueues {
    /// Consumers on its events queue: its instances consuming now.
    pub(crate) consumers: u64,
    /// Events waiting in its queue: its consumer lag.
    pub(crate) waiting: u64,
    /// Events delivered and not yet settled.
    pub(crate) in_flight: u64,
    /// Events waiting in its retry tiers, by tier (`10s`: 4).
    pub(crate) retrying: BTreeMap<String, u64>,
    /// Dead letters: ready, plus any a reader (an operator's command) holds now.
    pub(crate) dead_letters: u64,
    /// Dead letters a reader holds now.
    pub(crate) dead_letters_held: u64,
    /// Whether its dead-letter queue exists (the service has started once).
    pub(crate) has_dead_letter_queue: bool,
}

/// Every service's queues; services with no queue on the broker are absent.
///
/// # Errors
/// When the management API cannot be reached or refuses.
pub(crate) async fn service_queues(
    api: &ManagementApi,
    names: &Names,
) -> anyhow::Result<BTreeMap<String, ServiceQueues>> {
    let path = format!(
        "queues/{}?columns=name,messages_ready,messages_unacknowledged,consumers",
        percent_encode(&api.vhost)
    );
    let queues: Vec<QueueInfo> = api
        .get(&path, "the queue listing (the monitoring tag is needed)")
        .await?
        .json()
        .await?;
    let mut services: BTreeMap<String, ServiceQueues> = BTreeMap::new();
    for queue in queues {
        let Some((service, role)) = classify(names, &queue.name) else {
            continue;
        };
        let figures = services.entry(service.to_owned()).or_default();
        match role {
            Role::Events => {
                figures.consumers += queue.consumers;
                figures.waiting += queue.messages_ready;
                figures.in_flight += queue.messages_unacknowledged;
            }
            Role::Retry(tier) => {
                *figures.retrying.entry(tier.to_owned()).or_default() +=
                    queue.messages_ready + queue.messages_unacknowledged;
            }
            Role::DeadLetters => {
                figures.has_dead_letter_queue = true;
                figures.dead_letters += queue.messages_ready + queue.messages_unacknowledged;
                figures.dead_letters_held += queue.messages_unacknowledged;
            }
        }
    }
    Ok(services)
}

/// Whether `queue` is one the system itself uses (a service's events, retry or dead-letter
/// queue, or a `conveyor.` queue such as the audit log): no place to move dead letters to.
pub(crate) fn is_system_queue(names: &Names, queue: &str) -> bool {
    classify(names, queue).is_some()
        || names
            .unqualified(queue)
            .is_some_and(|name| name.starts_with("conveyor."))
}

#[derive(Debug, PartialEq, Eq)]
enum Role<'a> {
    Events,
    Retry(&'a str),
    DeadLetters,
}

/// The service and role of a queue under `names` (`orders.events`, `orders.retry.10s`,
/// `orders.dlq`, each behind the prefix if there is one); `None` for any other queue, those
/// of another prefix's system among them.
fn classify<'a>(names: &Names, queue: &'a str) -> Option<(&'a str, Role<'a>)> {
    let (service, role) = names.unqualified(queue)?.split_once('.')?;
    let role = match role {
        "events" => Role::Events,
        "dlq" => Role::DeadLetters,
        _ => Role::Retry(role.strip_prefix("retry.")?),
    };
    let plain = !service.is_empty()
        && service
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    plain.then_some((service, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_told_apart_by_role_and_prefix() {
        let plain = Names::default();
        assert_eq!(
            classify(&plain, "orders.events"),
            Some(("orders", Role::Events))
        );
        assert_eq!(
            classify(&plain, "order-saga.retry.10s"),
            Some(("order-saga", Role::Retry("10s")))
        );
        assert_eq!(
            classify(&plain, "payments.dlq"),
            Some(("payments", Role::DeadLetters))
        );
        assert_eq!(classify(&plain, "conveyor.dlq-audit"), None);
        assert_eq!(classify(&plain, "conveyor.unrouted"), None);
        assert_eq!(classify(&plain, "blue.orders.dlq"), None);
        let blue = Names::with_prefix("blue");
        assert_eq!(
            classify(&blue, "blue.orders.dlq"),
            Some(("orders", Role::DeadLetters))
        );
        assert_eq!(classify(&blue, "orders.dlq"), None);
        assert!(is_system_queue(&plain, "conveyor.dlq-audit"));
        assert!(is_system_queue(&plain, "payments.events"));
        assert!(!is_system_queue(&plain, "payments-parking"));
    }
}
