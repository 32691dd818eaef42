//! `conveyor new event`, run as a newcomer runs it, on a copy of the repository's
//! events-schema/ (and of the orders service's lib.rs): every file it writes, a schema whose
//! example passes it, and a refusal that changes nothing when the type is already there.

mod generators;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const LIB: &str = "events-schema/src/lib.rs";
const CATALOG: &str = "events-schema/src/catalog.rs";
const PUBLISHERS: &str = "events-schema/src/publishers.rs";
const CONTRACT_TESTS: &str = "events-schema/tests/contract.rs";
const ORDERS_LIB: &str = "services/orders/src/lib.rs";

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of events-schema/ (schemas, src, tests) and of the orders service's lib.rs in a
/// folder of the test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple();
        let dir = std::env::temp_dir().join(format!("conveyor-new-event-{id}"));
        for part in ["schemas", "src", "tests"] {
            let part = Path::new("events-schema").join(part);
            copy_dir(&repo_root().join(&part), &dir.join(&part));
        }
        std::fs::create_dir_all(dir.join("services/orders/src")).unwrap();
        std::fs::copy(repo_root().join(ORDERS_LIB), dir.join(ORDERS_LIB)).unwrap();
        Self(dir)
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.0.join(relative))
            .unwrap_or_else(|error| panic!("{relative}: {error}"))
    }

    /// Every file the command may edit, to compare before and after.
    fn snapshot(&self) -> [String; 5] {
        [LIB, CATALOG, PUBLISHERS, CONTRACT_TESTS, ORDERS_LIB].map(|file| self.read(file))
    }

    /// `conveyor new event ARGS --root <this copy>`: whether it succeeded, what it said.
    fn new_event(&self, args: &[&str]) -> (bool, String) {
        generators::conveyor_new("event", args, &self.0)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where `needle` starts in `text`, failing the test if it is not there.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
}

/// The line just before the line `line` of `text`.
fn line_before<'a>(text: &'a str, line: &str) -> &'a str {
    let lines: Vec<&str> = text.lines().collect();
    let index = lines
        .iter()
        .position(|candidate| *candidate == line)
        .unwrap_or_else(|| panic!("no line {line:?} in:\n{text}"));
    lines[index.saturating_sub(1)]
}

/// The schema file of `event_type` v1, parsed, after checking every example passes it.
fn schema_with_valid_examples(scratch: &Scratch, event_type: &str) -> Value {
    let text = scratch.read(&format!("events-schema/schemas/{event_type}/v1.json"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["$id"], format!("events-schema/{event_type}/v1"));
    assert_eq!(schema["title"], format!("{event_type} v1"));
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let examples = schema["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 1, "{text}");
    for example in examples {
        let errors: Vec<String> = validator
            .iter_errors(example)
            .map(|error| error.to_string())
            .collect();
        assert!(errors.is_empty(), "{event_type}: {errors:?}");
    }
    schema
}

/// `notification.sent`'s one-line entries, each where a reader of its list looks: the new
/// module among the others alphabetically, the type after every v1 and before the later
/// versions, the owner (new) at the end of OWNERS.
fn assert_registered_as_a_new_noun(scratch: &Scratch) {
    let lib = scratch.read(LIB);
    assert!(at(&lib, "pub mod money;") < at(&lib, "pub mod notifications;"));
    assert!(at(&lib, "pub mod notifications;") < at(&lib, "pub mod orders;"));
    assert!(lib.contains("`notifications`: the typed events."), "{lib}");

    let catalog = scratch.read(CATALOG);
    let entry = at(&catalog, "schema!(\"notification.sent\", 1),");
    assert!(entry < at(&catalog, ", 2),"), "{catalog}");
    let own_version = entry + "schema!(\"notification.sent\"".len();
    assert_eq!(catalog.rfind(", 1),"), Some(own_version), "{catalog}");

    let publishers = scratch.read(PUBLISHERS);
    let last = "    (\"notification.sent\", \"notifications\"),\n];";
    at(&publishers, last);

    let contract = scratch.read(CONTRACT_TESTS);
    let import = at(&contract, "use events_schema::notifications::*;\n");
    assert!(at(&contract, "use events_schema::money::") < import);
    assert!(import < at(&contract, "use events_schema::orders::*;"));
    let typed = at(&contract, "        typed!(NotificationSentV1),\n");
    assert_eq!(
        contract.rfind("V1),"),
        Some(typed + "        typed!(NotificationSent".len())
    );
}

#[test]
fn a_new_noun_gets_its_schema_its_module_and_every_registration() {
    let scratch = Scratch::new();
    let orders_before = scratch.read(ORDERS_LIB);

    let (ok, output) = scratch.new_event(&[
        "notification.sent",
        "--owner",
        "notifications",
        "--description",
        "A notification went out to a user",
    ]);

    assert!(ok, "{output}");
    let schema = schema_with_valid_examples(&scratch, "notification.sent");
    assert_eq!(
        schema["description"],
        "A notification went out to a user. Fields not listed here may be added in later revisions of this version; consumers ignore them."
    );
    assert_eq!(schema["required"], json!(["notification_id"]));
    // The placeholder holds like any field: the validator refuses a bad id.
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(!validator.is_valid(&json!({ "notification_id": 5 })));

    let module = scratch.read("events-schema/src/notifications.rs");
    assert!(module.starts_with("//! Events of the notifications service.\n"));
    assert!(module.contains("/// A notification went out to a user.\n#[derive("));
    assert!(module.contains("pub struct NotificationSentV1 {\n    pub notification_id: Uuid,\n}"));
    assert!(module.contains("const TYPE: &'static str = \"notification.sent\";"));
    assert!(module.contains("impl EventData for NotificationSentV1 {"));

    assert_registered_as_a_new_noun(&scratch);
    assert_eq!(scratch.read(ORDERS_LIB), orders_before);
    for expected in [
        "a service new to the system",
        "events-schema/src/notifications.rs",
        "cargo run -q -p conveyor-cli -- schema asyncapi",
        "cargo run -q -p conveyor-cli -- topology export",
        "scripts/generate-models",
        "conveyor schema check",
        "crates/system/src/roster.rs",
        "`emits` of the notifications service's `DECLARATION`",
    ] {
        assert!(output.contains(expected), "{expected:?} in:\n{output}");
    }
}

#[test]
fn a_second_run_is_refused_naming_where_the_type_is_and_changes_nothing() {
    let scratch = Scratch::new();
    let (ok, output) = scratch.new_event(&["notification.sent", "--owner", "notifications"]);
    assert!(ok, "{output}");
    let before = scratch.snapshot();
    let module_before = scratch.read("events-schema/src/notifications.rs");

    let (ok, output) = scratch.new_event(&["notification.sent", "--owner", "notifications"]);

    assert!(!ok, "{output}");
    for expected in [
        "error: notification.sent is already there: ",
        "events-schema/schemas/notification.sent/",
        "events-schema/src/catalog.rs (SCHEMAS)",
        "events-schema/src/publishers.rs (OWNERS)",
        "events-schema/tests/contract.rs (typed_events)",
        "events-schema/src/notifications.rs",
        "Nothing was written",
    ] {
        assert!(output.contains(expected), "{expected:?} in:\n{output}");
    }
    assert_eq!(scratch.snapshot(), before);
    assert_eq!(
        scratch.read("events-schema/src/notifications.rs"),
        module_before
    );
}

#[test]
fn a_type_of_a_known_noun_joins_its_module_and_its_owners_emits() {
    let scratch = Scratch::new();
    let lib_before = scratch.read(LIB);

    let (ok, output) = scratch.new_event(&["order.shipped", "--owner", "orders"]);

    assert!(ok, "{output}");
    let schema = schema_with_valid_examples(&scratch, "order.shipped");
    assert_eq!(schema["required"], json!(["order_id"]));
    assert!(
        schema["description"]
            .as_str()
            .unwrap()
            .starts_with("An order was shipped. Fields not listed here")
    );
    let module = scratch.read("events-schema/src/orders.rs");
    let code = at(
        &module,
        "/// An order was shipped.\n#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]\npub struct OrderShippedV1 {\n    pub order_id: Uuid,\n}",
    );
    assert!(at(&module, "pub struct OrderCancelledV1") < code);
    assert!(code < at(&module, "same_shape_version!"), "{module}");
    assert_eq!(scratch.read(LIB), lib_before, "no new module to declare");

    let catalog = scratch.read(CATALOG);
    let previous = line_before(&catalog, "    schema!(\"order.shipped\", 1),");
    assert!(previous.starts_with("    schema!(\"order."), "{catalog}");
    let publishers = scratch.read(PUBLISHERS);
    let previous = line_before(&publishers, "    (\"order.shipped\", \"orders\"),");
    assert!(previous.starts_with("    (\"order."), "{publishers}");
    let contract = scratch.read(CONTRACT_TESTS);
    let previous = line_before(&contract, "        typed!(OrderShippedV1),");
    assert!(previous.starts_with("        typed!(Order"), "{contract}");
    assert_eq!(contract.matches("use events_schema::orders::*;").count(), 1);
    let orders = scratch.read(ORDERS_LIB);
    assert!(
        orders.contains("        \"order.shipped\",\n    ],\n"),
        "{orders}"
    );
    // orders owns other types already: no word on the roster.
    assert!(!output.contains("roster"), "{output}");
    assert!(output.contains("services/orders/src/lib.rs:"), "{output}");
}

#[test]
fn bad_names_near_miss_owners_and_existing_types_are_refused_with_nothing_written() {
    let scratch = Scratch::new();
    let before = scratch.snapshot();

    for (args, expected) in [
        ("Order.Shipped --owner orders", "try `order.shipped`"),
        ("order --owner orders", "has no past-tense part"),
        ("order.shipped.v2 --owner orders", "3 dot-separated"),
        ("order.created --owner orders", "already there"),
        ("shipment.scheduled --owner shipping", "src/shipping.rs"),
        ("order.shipped --owner order", "mean `--owner orders`"),
        ("order.shipped --owner gateway", "owns no event type"),
        ("order.shipped --owner Orders", "not a service name"),
    ] {
        let args: Vec<&str> = args.split(' ').collect();

        let (ok, output) = scratch.new_event(&args);

        assert!(!ok, "{args:?}: {output}");
        assert!(output.contains(expected), "{args:?}: {output}");
    }
    assert_eq!(scratch.snapshot(), before);
    assert!(
        !scratch
            .0
            .join("events-schema/schemas/order.shipped")
            .exists()
    );
}

#[test]
fn the_help_names_each_file_written() {
    let output = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["new", "event", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);

    assert!(output.status.success(), "{help}");
    for file in [
        "events-schema/schemas/TYPE/v1.json",
        "events-schema/src/<module>.rs",
        "events-schema/src/lib.rs",
        "events-schema/src/catalog.rs",
        "events-schema/src/publishers.rs",
        "events-schema/tests/contract.rs",
        "services/<dir>/src/lib.rs",
        "--owner <SERVICE>",
        "--root <DIR>",
    ] {
        assert!(help.contains(file), "{file:?} in:\n{help}");
    }
}
