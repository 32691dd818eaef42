//! The names a new event type gives (its module, struct and placeholder field) and the
//! checks on the type and owner a user types, made before anything is written.

use std::collections::BTreeSet;

use anyhow::{bail, ensure};

/// What an example of a good name looks like, for the error messages.
const TYPE_SHAPE: &str = "lowercase `noun.past-tense`: two parts joined by one dot, each a letter and then letters, digits or '-' (order.shipped, payment.partially-refunded)";

/// A new event type's name, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventName {
    /// `notification.sent`
    pub(crate) event_type: String,
    /// `notification`: what the event is about, which groups types into modules.
    pub(crate) noun: String,
    /// `sent`
    pub(crate) verb: String,
}

impl EventName {
    /// Checks `text` is `noun.past-tense`. Exactly two parts, because consumers bind with
    /// patterns like `order.*` and tools split the type on its dot; lowercase with '-', as
    /// routing keys, queue names and file names of every existing type are.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        ensure!(
            !text.is_empty(),
            "the event type is empty: give it as {TYPE_SHAPE}"
        );
        ensure!(
            !text.chars().any(|c| c.is_ascii_uppercase()),
            "`{text}` has capitals: event types are {TYPE_SHAPE}; try `{}`",
            text.to_ascii_lowercase()
        );
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            [noun, verb] => {
                check_part(text, noun)?;
                check_part(text, verb)?;
                Ok(Self {
                    event_type: text.to_owned(),
                    noun: (*noun).to_owned(),
                    verb: (*verb).to_owned(),
                })
            }
            [_] => {
                bail!("`{text}` has no past-tense part: name what happened to it, as {TYPE_SHAPE}")
            }
            _ => bail!(
                "`{text}` has {} dot-separated parts, not two: event types are {TYPE_SHAPE}; the version is not part of the name (v1 is the file schemas/<type>/v1.json)",
                parts.len()
            ),
        }
    }

    /// `NotificationSentV1`, as every existing type is named from its event type.
    pub(crate) fn struct_name(&self) -> String {
        struct_name(&self.event_type, 1)
    }

    /// `notification_id`: the placeholder field, a UUID naming what the event is about.
    pub(crate) fn id_field(&self) -> String {
        format!("{}_id", self.noun.replace('-', "_"))
    }

    /// The module a noun without one gets: its plural, as `orders` and `payments` are named.
    pub(crate) fn new_module(&self) -> String {
        plural(&self.noun).replace('-', "_")
    }

    /// `line item` for `line-item`: the noun in a sentence.
    pub(crate) fn noun_words(&self) -> String {
        self.noun.replace('-', " ")
    }

    /// A first description, for when `--description` is not given: `A notification was sent.`
    pub(crate) fn default_description(&self) -> String {
        let noun = self.noun_words();
        let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "An"
        } else {
            "A"
        };
        format!("{article} {noun} was {}.", self.verb.replace('-', " "))
    }
}

/// One part of the type: a letter, then letters, digits or single '-' between them.
fn check_part(text: &str, part: &str) -> anyhow::Result<()> {
    ensure!(
        !part.is_empty(),
        "`{text}` has an empty part: event types are {TYPE_SHAPE}"
    );
    ensure!(
        part.starts_with(|c: char| c.is_ascii_lowercase())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "`{part}` in `{text}` must start with a letter and hold only a-z, 0-9 and '-': event types are {TYPE_SHAPE}"
    );
    ensure!(
        !part.ends_with('-') && !part.contains("--"),
        "`{part}` in `{text}` ends with '-' or holds '--': use one '-' between words ({TYPE_SHAPE})"
    );
    Ok(())
}

/// `UserRegisteredV2` for `user.registered` version 2: each word of the type capitalised.
pub(crate) fn struct_name(event_type: &str, version: u32) -> String {
    let mut name = String::new();
    for word in event_type.split(['.', '-']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.push_str(chars.as_str());
        }
    }
    format!("{name}V{version}")
}

/// English plural of the last word, for the common cases; a noun that needs another form
/// can have its module renamed after generation (the generator then finds it by its types).
fn plural(noun: &str) -> String {
    if noun.ends_with(['s', 'x', 'z']) || noun.ends_with("sh") || noun.ends_with("ch") {
        return format!("{noun}es");
    }
    if let Some(stem) = noun.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        return format!("{stem}ies");
    }
    format!("{noun}s")
}

/// Whether `owner` is a service already known, or a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerKind {
    Known,
    New,
}

/// Checks `owner` names a service: one already known (an owner in `OWNERS` or a service
/// crate's `SERVICE`), or a new one. A new service is allowed because a team adding its
/// own service starts with its first event, before the service is in any list. A name one
/// or two letters from a known service is refused: `order` for `orders` would make an owner
/// no broker user publishes as, and no test would notice before consumers refused its events.
pub(crate) fn check_owner(
    owner: &str,
    known: &BTreeSet<String>,
    gateway: &str,
) -> anyhow::Result<OwnerKind> {
    ensure!(
        owner.starts_with(|c: char| c.is_ascii_lowercase())
            && owner
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "`{owner}` is not a service name: lowercase, a letter and then letters, digits or '-' (as in `orders`, `notifications`)"
    );
    ensure!(
        owner != gateway,
        "the {gateway} owns no event type: it only passes on the types in INGESTIBLE (events-schema/src/publishers.rs) that producing systems send over HTTP. Give the service that emits the event as --owner; to let outside systems send it too, add it to INGESTIBLE afterwards"
    );
    if known.contains(owner) {
        return Ok(OwnerKind::Known);
    }
    if let Some(near) = known.iter().find(|name| edit_distance(owner, name) <= 2) {
        let names: Vec<&str> = known.iter().map(String::as_str).collect();
        bail!(
            "`{owner}` is no known service but is close to `{near}`: did you mean `--owner {near}`? A new service needs a name clearly its own (known: {})",
            names.join(", ")
        );
    }
    Ok(OwnerKind::New)
}

/// Levenshtein distance: how many letters to insert, remove or change to turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let change = previous[j] + usize::from(ca != *cb);
            current.push(change.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_gives_its_struct_module_and_field() {
        let name = EventName::parse("line-item.partially-refunded").unwrap();
        assert_eq!(name.noun, "line-item");
        assert_eq!(name.struct_name(), "LineItemPartiallyRefundedV1");
        assert_eq!(name.new_module(), "line_items");
        assert_eq!(name.id_field(), "line_item_id");
        assert_eq!(
            name.default_description(),
            "A line item was partially refunded."
        );
        let name = EventName::parse("order.shipped").unwrap();
        assert_eq!(name.default_description(), "An order was shipped.");
        assert_eq!(struct_name("user.registered", 2), "UserRegisteredV2");
        for (noun, module) in [
            ("notification", "notifications"),
            ("address", "addresses"),
            ("batch", "batches"),
            ("delivery", "deliveries"),
            ("survey", "surveys"),
        ] {
            let name = EventName::parse(&format!("{noun}.sent")).unwrap();
            assert_eq!(name.new_module(), module);
        }
    }

    #[test]
    fn a_badly_formed_type_is_refused_saying_what_is_wrong() {
        for (text, expected) in [
            ("", "is empty"),
            ("Order.Shipped", "try `order.shipped`"),
            ("order", "no past-tense part"),
            ("order.shipped.v2", "3 dot-separated parts"),
            ("order..shipped", "3 dot-separated parts"),
            ("order.", "an empty part"),
            ("order.ship_ped", "only a-z, 0-9 and '-'"),
            ("2fa.enabled", "must start with a letter"),
            ("order.shipped-", "ends with '-'"),
            ("line--item.added", "holds '--'"),
        ] {
            let error = EventName::parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn owners_are_known_new_or_refused_as_a_near_miss() {
        let known: BTreeSet<String> = ["orders", "payments", "users"].map(String::from).into();
        assert_eq!(
            check_owner("orders", &known, "gateway").unwrap(),
            OwnerKind::Known
        );
        assert_eq!(
            check_owner("notifications", &known, "gateway").unwrap(),
            OwnerKind::New
        );
        let error = check_owner("order", &known, "gateway")
            .unwrap_err()
            .to_string();
        assert!(error.contains("did you mean `--owner orders`"), "{error}");
        let error = check_owner("gateway", &known, "gateway")
            .unwrap_err()
            .to_string();
        assert!(error.contains("owns no event type"), "{error}");
        assert!(check_owner("Orders", &known, "gateway").is_err());
        assert_eq!(edit_distance("payment", "payments"), 1);
        assert_eq!(edit_distance("payouts", "payments"), 3);
    }
}
