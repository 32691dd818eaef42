//! Least privilege on the broker, generated from the topology: each service's own broker
//! user may configure and read only its own queues, and may publish to the events exchange
//! only the routing keys of the events it emits (RabbitMQ topic permissions).

use super::{Names, ServiceTopology};

/// A broker user and what it may do in one vhost, as RabbitMQ's three permission regexes
/// and, where set, its topic permissions on the events exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUser {
    /// The user's name on the broker (`conveyor-orders`).
    pub name: String,
    /// The service it belongs to (`orders`, `gateway`, `operator`): names its password's
    /// variable, `<SERVICE>_BROKER_PASSWORD`.
    pub owner: String,
    /// The queues and exchanges it may declare and delete, as a regex.
    pub configure: String,
    /// The exchanges it may publish to and the queues it may bind, as a regex.
    pub write: String,
    /// The queues it may consume from and the exchanges it may bind from, as a regex.
    pub read: String,
    /// The routing keys it may use on the events exchange; `None` for no limit.
    pub topic: Option<TopicPermission>,
    /// RabbitMQ user tags, comma-separated: `management` lets the operators' user read
    /// queue counts through the management API (`conveyor dlq list`); empty for services.
    pub tags: String,
}

/// Which routing keys a user may publish to (`write`) and bind from (`read`) an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    /// The exchange the permission applies to: the events exchange.
    pub exchange: String,
    /// The routing keys it may publish with, as a regex.
    pub write: String,
    /// The routing keys it may bind with, as a regex.
    pub read: String,
}

/// Matches nothing: RabbitMQ's way of granting no permission.
const NOTHING: &str = "^$";

impl BrokerUser {
    /// `service`'s user: `consumes` is its consumer's topology (none for a service that
    /// only publishes), `publishes` the event types it may publish.
    pub fn for_service(
        names: &Names,
        service: &str,
        consumes: Option<&ServiceTopology>,
        publishes: &[&str],
    ) -> Self {
        let events = names.events_exchange();
        let topic = TopicPermission {
            exchange: events.clone(),
            write: any_of(publishes.iter().copied()),
            read: any_of(
                consumes
                    .into_iter()
                    .flat_map(|topology| topology.event_types.iter().map(String::as_str)),
            ),
        };
        let Some(consumes) = consumes else {
            return Self {
                name: names.broker_user(service),
                owner: service.to_owned(),
                configure: NOTHING.to_owned(),
                write: any_of([events.as_str()]),
                read: NOTHING.to_owned(),
                topic: Some(topic),
                tags: String::new(),
            };
        };
        // Binding reads the events exchange; a service publishes its own events there too.
        let exchanges = [events, names.retry_exchange(), names.dead_letter_exchange()];
        Self::consuming(names, service, consumes, topic, &exchanges, &exchanges)
    }

    /// The user of a consumer outside the system's services (one in another language,
    /// `conveyor topology users --consumer`): its own queues, as a service's, bound to the
    /// event types `consumes` names, and nothing to publish but its own retry copies and dead
    /// letters.
    pub fn for_outside_consumer(names: &Names, consumes: &ServiceTopology) -> Self {
        let topic = TopicPermission {
            exchange: names.events_exchange(),
            write: NOTHING.to_owned(),
            read: any_of(consumes.event_types.iter().map(String::as_str)),
        };
        let retries_and_dead_letters = [names.retry_exchange(), names.dead_letter_exchange()];
        // Binding needs read on the events exchange only: it may bind there, never publish.
        let bound_from = [
            names.events_exchange(),
            names.retry_exchange(),
            names.dead_letter_exchange(),
        ];
        Self::consuming(
            names,
            &consumes.service,
            consumes,
            topic,
            &bound_from,
            &retries_and_dead_letters,
        )
    }

    /// A user that consumes through its own queue, retry queues and dead-letter queue, binds
    /// from `reads` and publishes to `writes`: retry copies and dead letters go through the
    /// retry and dead-letter exchanges, and declaring a retry queue whose dead letters go
    /// back through the default exchange needs write on it (`amq.default`).
    fn consuming(
        names: &Names,
        service: &str,
        consumes: &ServiceTopology,
        topic: TopicPermission,
        reads: &[String],
        writes: &[String],
    ) -> Self {
        let queues = Self::own_queues(names, consumes);
        let own = || queues.iter().map(String::as_str);
        Self {
            name: names.broker_user(service),
            owner: service.to_owned(),
            configure: any_of(own()),
            write: any_of(
                own()
                    .chain(writes.iter().map(String::as_str))
                    .chain(["amq.default"]),
            ),
            read: any_of(own().chain(reads.iter().map(String::as_str))),
            topic: Some(topic),
            tags: String::new(),
        }
    }

    /// A consumer's queue, its retry queues and its dead-letter queue.
    fn own_queues(names: &Names, consumes: &ServiceTopology) -> Vec<String> {
        let service = &consumes.service;
        let mut queues = vec![names.service_queue(service)];
        queues.extend(
            consumes
                .retry_tiers
                .iter()
                .map(|delay| names.retry_queue(service, *delay)),
        );
        queues.push(names.dead_letter_queue(service));
        queues
    }

    /// The operators' user (`conveyor topology apply`, `conveyor dlq`): everything in the
    /// vhost. Consumers believe the original publisher its replays name.
    pub fn operator(names: &Names) -> Self {
        Self::everything_in_the_vhost(names, "operator", "management")
    }

    /// The broker's administrator, for a broker whose users all come from definitions
    /// loaded at boot (RabbitMQ then makes no default user): the management UI, users and
    /// vhosts. Its password comes from `ADMIN_BROKER_PASSWORD`.
    pub fn administrator(names: &Names) -> Self {
        Self::everything_in_the_vhost(names, "admin", "administrator")
    }

    fn everything_in_the_vhost(names: &Names, owner: &str, tags: &str) -> Self {
        Self {
            name: names.broker_user(owner),
            owner: owner.to_owned(),
            configure: ".*".to_owned(),
            write: ".*".to_owned(),
            read: ".*".to_owned(),
            topic: None,
            tags: tags.to_owned(),
        }
    }

    /// The variable its password comes from: `ORDERS_BROKER_PASSWORD`.
    pub fn password_variable(&self) -> String {
        format!(
            "{}_BROKER_PASSWORD",
            self.owner.to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// A regex matching exactly the given names, or nothing when there are none.
fn any_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let escaped: Vec<String> = names.into_iter().map(escape).collect();
    if escaped.is_empty() {
        NOTHING.to_owned()
    } else {
        format!("^({})$", escaped.join("|"))
    }
}

fn escape(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len() + 4);
    for character in name.chars() {
        if "\\.^$|?*+()[]{}-".contains(character) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    fn shipping() -> ServiceTopology {
        ServiceTopology {
            service: "shipping".into(),
            event_types: BTreeSet::from(["payment.captured".to_owned()]),
            retry_tiers: vec![Duration::from_secs(1)],
        }
    }

    #[test]
    fn a_consumer_configures_only_its_own_queues_and_publishes_only_its_own_types() {
        let user = BrokerUser::for_service(
            &Names::default(),
            "shipping",
            Some(&shipping()),
            &["shipment.scheduled", "shipment.failed"],
        );
        assert_eq!(user.name, "conveyor-shipping");
        assert_eq!(
            user.configure,
            r"^(shipping\.events|shipping\.retry\.1s|shipping\.dlq)$"
        );
        assert!(user.write.contains(r"conveyor\.events") && user.write.contains(r"amq\.default"));
        assert!(!user.read.contains("orders"));
        let topic = user.topic.unwrap();
        assert_eq!(topic.write, r"^(shipment\.scheduled|shipment\.failed)$");
        assert_eq!(topic.read, r"^(payment\.captured)$");
        assert_eq!(
            BrokerUser::operator(&Names::default()).password_variable(),
            "OPERATOR_BROKER_PASSWORD"
        );
    }

    #[test]
    fn an_outside_consumer_binds_its_own_queues_and_publishes_only_retries_and_dead_letters() {
        let consumer = ServiceTopology {
            service: "ledger-py".into(),
            event_types: BTreeSet::from(["order.confirmed".to_owned()]),
            retry_tiers: vec![Duration::from_secs(1)],
        };
        let user = BrokerUser::for_outside_consumer(&Names::with_prefix("t1"), &consumer);
        assert_eq!(user.name, "t1.conveyor-ledger-py");
        assert_eq!(user.password_variable(), "LEDGER_PY_BROKER_PASSWORD");
        assert_eq!(
            user.configure,
            r"^(t1\.ledger\-py\.events|t1\.ledger\-py\.retry\.1s|t1\.ledger\-py\.dlq)$"
        );
        assert!(!user.write.contains(r"conveyor\.events"), "{}", user.write);
        assert!(
            user.write.contains(r"t1\.conveyor\.retry")
                && user.write.contains(r"t1\.conveyor\.dlx")
        );
        assert!(user.read.contains(r"t1\.conveyor\.events"), "{}", user.read);
        let topic = user.topic.unwrap();
        assert_eq!(topic.write, NOTHING);
        assert_eq!(topic.read, r"^(order\.confirmed)$");
    }

    #[test]
    fn a_producer_only_writes_the_events_exchange() {
        let user = BrokerUser::for_service(
            &Names::with_prefix("t1"),
            "users",
            None,
            &["user.registered"],
        );
        assert_eq!(user.name, "t1.conveyor-users");
        assert_eq!(user.configure, NOTHING);
        assert_eq!(user.read, NOTHING);
        assert_eq!(user.write, r"^(t1\.conveyor\.events)$");
        assert_eq!(user.topic.unwrap().read, NOTHING);
    }
}
