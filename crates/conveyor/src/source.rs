//! Who published a delivery, as the broker vouches for it, and whether that publisher may
//! publish its event type.
//!
//! RabbitMQ refuses a message whose `user_id` is not the user of the connection that
//! publishes it, so `user_id` names the publisher's broker user truthfully. Conveyor's
//! publishers always set it. Retry copies and replayed dead letters are published again by
//! the consuming service itself or by an operator; they carry the original publisher in
//! `x-conveyor-publisher`, which is believed only from those two users.

use lapin::BasicProperties;

use crate::contract::Contract;
use crate::headers;
use crate::topology::Names;

/// The broker users whose copies of other publishers' events `service` believes: its own
/// (retry copies) and the operators' (`conveyor dlq replay`).
pub fn relays(names: &Names, service: &str) -> [String; 2] {
    [names.broker_user(service), names.broker_user("operator")]
}

/// The publisher a message came from: its `user_id`, or for a copy published again by one
/// of `relays`, the original publisher that copy names (the relay itself when it names none).
pub fn origin(properties: &BasicProperties, relays: &[String]) -> Option<String> {
    let user = properties.user_id().as_ref()?.as_str();
    if relays.iter().any(|relay| relay == user) {
        let named = properties
            .headers()
            .as_ref()
            .and_then(|table| headers::get_str(table, headers::PUBLISHER));
        return Some(named.unwrap_or(user).to_owned());
    }
    Some(user.to_owned())
}

/// A consumer's rule for who may send it what.
#[derive(Debug, Clone)]
pub(crate) enum SourceRule {
    /// Services share one broker account (local development, tests): the broker cannot
    /// tell them apart, so nothing is checked.
    Shared,
    /// Every service has its own broker user: an event must come from a user of a service
    /// the contract lists as its publisher.
    OwnUsers { names: Names, relays: [String; 2] },
}

impl SourceRule {
    /// The rule for `service` connected as `user`: own users when it connects as
    /// [`Names::broker_user`] of itself.
    pub(crate) fn for_connection(names: &Names, service: &str, user: &str) -> Self {
        if user == names.broker_user(service) {
            Self::OwnUsers {
                names: names.clone(),
                relays: relays(names, service),
            }
        } else {
            Self::Shared
        }
    }

    /// # Errors
    /// Why the delivery's publisher may not publish `event_type`, for the dead letter.
    pub(crate) fn check(
        &self,
        event_type: &str,
        properties: &BasicProperties,
        contract: Option<&dyn Contract>,
    ) -> Result<(), String> {
        let Self::OwnUsers { names, relays } = self else {
            return Ok(());
        };
        let allowed: Vec<String> = contract
            .map(|contract| contract.publishers(event_type))
            .unwrap_or_default()
            .iter()
            .map(|publisher| names.broker_user(publisher))
            .collect();
        let origin = origin(properties, relays);
        match origin {
            Some(user) if allowed.contains(&user) => Ok(()),
            Some(user) => Err(format!(
                "{event_type} may be published only by {}, and this one came from broker user {user}",
                describe(&allowed)
            )),
            None => Err(format!(
                "{event_type} may be published only by {}, and this one carries no user_id, so \
                 its publisher is unknown",
                describe(&allowed)
            )),
        }
    }
}

fn describe(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "nobody (no publisher is declared for it)".to_owned()
    } else {
        allowed.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{FieldTable, ShortString};

    use super::*;
    use crate::contract::ContractViolation;
    use crate::envelope::Envelope;

    struct Payments;

    impl Contract for Payments {
        fn check(&self, _: &Envelope) -> Result<(), ContractViolation> {
            Ok(())
        }

        fn publishers(&self, event_type: &str) -> Vec<&'static str> {
            if event_type == "payment.captured" {
                vec!["payments"]
            } else {
                Vec::new()
            }
        }
    }

    fn from(user: Option<&str>, publisher_header: Option<&str>) -> BasicProperties {
        let mut table = FieldTable::default();
        if let Some(publisher) = publisher_header {
            headers::set_str(&mut table, headers::PUBLISHER, publisher);
        }
        let properties = BasicProperties::default().with_headers(table);
        match user {
            Some(user) => properties.with_user_id(ShortString::from(user)),
            None => properties,
        }
    }

    fn shipping() -> SourceRule {
        SourceRule::for_connection(&Names::default(), "shipping", "conveyor-shipping")
    }

    #[test]
    fn the_owner_passes_and_anyone_else_is_refused() {
        let rule = shipping();
        let check = |properties: BasicProperties| {
            rule.check("payment.captured", &properties, Some(&Payments))
        };
        assert!(check(from(Some("conveyor-payments"), None)).is_ok());
        let forged = check(from(Some("conveyor-orders"), None)).unwrap_err();
        assert!(forged.contains("conveyor-orders"), "{forged}");
        assert!(check(from(None, None)).is_err());
        // The header is believed only from a relay: another user cannot claim an origin.
        assert!(check(from(Some("conveyor-orders"), Some("conveyor-payments"))).is_err());
    }

    #[test]
    fn retry_copies_and_replays_keep_their_original_publisher() {
        let rule = shipping();
        let check = |properties: BasicProperties| {
            rule.check("payment.captured", &properties, Some(&Payments))
        };
        assert!(check(from(Some("conveyor-shipping"), Some("conveyor-payments"))).is_ok());
        assert!(check(from(Some("conveyor-operator"), Some("conveyor-payments"))).is_ok());
        assert!(check(from(Some("conveyor-operator"), None)).is_err());
        assert!(check(from(Some("conveyor-shipping"), Some("conveyor-orders"))).is_err());
    }

    #[test]
    fn a_shared_account_checks_nothing() {
        let rule = SourceRule::for_connection(&Names::default(), "shipping", "guest");
        assert!(matches!(rule, SourceRule::Shared));
        assert!(
            rule.check("payment.captured", &from(None, None), Some(&Payments))
                .is_ok()
        );
    }

    #[test]
    fn a_type_nobody_may_publish_is_refused_from_everyone() {
        let error = shipping()
            .check(
                "order.created",
                &from(Some("conveyor-orders"), None),
                Some(&Payments),
            )
            .unwrap_err();
        assert!(error.contains("nobody"), "{error}");
    }
}
