//! `conveyor new service`, run as a newcomer runs it on a copy of the files it reads and
//! edits: the crate it writes, the three registration lines, and refusals that change
//! nothing. That the crate builds, passes clippy and its tests, and handles a real event,
//! is scripts/check-generators' part (CI runs it).

mod generators;

use std::path::{Path, PathBuf};

const WORKSPACE: &str = "Cargo.toml";
const SYSTEM_CARGO: &str = "crates/system/Cargo.toml";
const ROSTER: &str = "crates/system/src/roster.rs";
const PUBLISHERS: &str = "events-schema/src/publishers.rs";

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The files `new service` reads and edits, copied into a folder of the test's own,
/// removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple();
        let dir = std::env::temp_dir().join(format!("conveyor-new-service-{id}"));
        let mut files = vec![
            WORKSPACE.to_owned(),
            SYSTEM_CARGO.to_owned(),
            ROSTER.to_owned(),
        ];
        for service in ["users", "inventory", "orders", "payments", "shipping"] {
            files.push(format!("services/{service}/src/lib.rs"));
        }
        let sources = std::fs::read_dir(repo_root().join("events-schema/src")).unwrap();
        for entry in sources {
            let name = entry.unwrap().file_name();
            files.push(format!("events-schema/src/{}", name.to_string_lossy()));
        }
        for file in files {
            let target = dir.join(&file);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(repo_root().join(&file), target).unwrap();
        }
        Self(dir)
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.0.join(relative))
            .unwrap_or_else(|error| panic!("{relative}: {error}"))
    }

    /// `conveyor new service ARGS --root <this copy>`: whether it succeeded, what it said.
    fn new_service(&self, args: &[&str]) -> (bool, String) {
        generators::conveyor_new("service", args, &self.0)
    }

    fn registrations(&self) -> [String; 3] {
        [WORKSPACE, SYSTEM_CARGO, ROSTER].map(|file| self.read(file))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_listener_gets_a_crate_a_handler_and_test_per_type_and_three_registration_lines() {
    let scratch = Scratch::new();
    let (ok, output) = scratch.new_service(&[
        "notifications",
        "--consumes",
        "order.confirmed",
        "--consumes",
        "order.cancelled",
    ]);
    assert!(ok, "{output}");

    let lib = scratch.read("services/notifications/src/lib.rs");
    assert!(
        lib.contains("pub const SERVICE: &str = \"notifications\";"),
        "{lib}"
    );
    assert!(
        lib.contains("default_port: 8086,"),
        "the port after shipping's: {lib}"
    );
    assert!(
        lib.contains(".handler(on_order_confirmed::OnOrderConfirmed)"),
        "{lib}"
    );
    assert!(
        lib.contains(".handler(on_order_cancelled::OnOrderCancelled)"),
        "{lib}"
    );
    let handler = scratch.read("services/notifications/src/on_order_confirmed.rs");
    assert!(
        handler.contains("type Event = OrderConfirmedV1;"),
        "{handler}"
    );
    assert!(
        handler.contains("use events_schema::orders::OrderConfirmedV1;"),
        "{handler}"
    );
    let tests = scratch.read("services/notifications/tests/handlers.rs");
    assert!(
        tests.contains("async fn order_confirmed_is_handled_once()"),
        "{tests}"
    );
    assert!(
        tests.contains("async fn order_cancelled_is_handled_once()"),
        "{tests}"
    );
    assert!(tests.contains("again.is_duplicate()"), "{tests}");
    let migration = scratch.read("services/notifications/migrations/0001_received.sql");
    assert!(migration.contains("CREATE TABLE received"), "{migration}");
    let main = scratch.read("services/notifications/src/main.rs");
    assert!(main.contains("platform::run_service(&notifications_service::DECLARATION)"));

    let [workspace, system, roster] = scratch.registrations();
    assert!(
        workspace.contains("notifications-service = { path = \"services/notifications\" }\n"),
        "{workspace}"
    );
    assert!(
        system.contains("notifications-service.workspace = true\n"),
        "{system}"
    );
    let line = "    &notifications_service::DECLARATION,\n];";
    assert!(roster.contains(line), "{roster}");
    for step in [
        "cargo test -p notifications-service",
        "-- deploy",
        "topology export",
    ] {
        assert!(
            output.contains(step),
            "the next steps name `{step}`: {output}"
        );
    }
}

#[test]
fn a_service_emits_only_types_the_contract_gives_it() {
    let scratch = Scratch::new();
    let before = scratch.registrations();

    let (ok, output) = scratch.new_service(&["billing", "--emits", "order.confirmed"]);
    assert!(!ok);
    assert!(output.contains("order.confirmed is orders'"), "{output}");
    let (ok, output) = scratch.new_service(&["billing", "--emits", "invoice.sent"]);
    assert!(!ok);
    assert!(
        output.contains("conveyor new event invoice.sent --owner billing"),
        "{output}"
    );
    assert!(!scratch.0.join("services/billing").exists());
    assert_eq!(scratch.registrations(), before, "a refusal writes nothing");

    let publishers = scratch.read(PUBLISHERS).replace(
        "pub const OWNERS: &[(&str, &str)] = &[\n",
        "pub const OWNERS: &[(&str, &str)] = &[\n    (\"invoice.sent\", \"billing\"),\n",
    );
    std::fs::write(scratch.0.join(PUBLISHERS), publishers).unwrap();
    let (ok, output) = scratch.new_service(&["billing", "--emits", "invoice.sent"]);
    assert!(ok, "{output}");
    let lib = scratch.read("services/billing/src/lib.rs");
    assert!(lib.contains("emits: &[\"invoice.sent\"],"), "{lib}");
    assert!(
        lib.contains("consumer: None,"),
        "a service that only emits: {lib}"
    );
    assert!(!scratch.0.join("services/billing/tests").exists());
}

#[test]
fn bad_names_unknown_types_and_taken_names_are_refused_by_what_is_wrong() {
    let scratch = Scratch::new();
    let before = scratch.registrations();
    let refusals = [
        (vec!["fraud-check"], "lowercase letters and digits"),
        (vec!["orders"], "services/orders exists already"),
        (vec!["gateway"], "taken by a broker user"),
        (
            vec!["notifications", "--consumes", "order.confirmd"],
            "order.confirmd is not in the contract",
        ),
        (
            vec!["notifications", "--consumes", "Order.Confirmed"],
            "has capitals",
        ),
        (
            vec!["notifications", "--port", "8084"],
            "another service's default",
        ),
    ];
    for (args, said) in refusals {
        let (ok, output) = scratch.new_service(&args);
        assert!(!ok, "{args:?} was accepted: {output}");
        assert!(output.contains(said), "{args:?}: {output}");
    }
    assert_eq!(scratch.registrations(), before);
    assert!(!scratch.0.join("services/notifications").exists());
}

/// Outside Conveyor's repository: a workspace of the team's own is made beside it, taking
/// Conveyor's crates by a relative path, and an emitted type is the service's own; one of
/// Conveyor's contract, or a name of its services, is refused with nothing written.
#[test]
fn outside_the_repository_a_workspace_of_its_own_is_made_with_its_own_event_types() {
    let id = uuid::Uuid::new_v4().simple();
    let shop = std::env::temp_dir().join(format!("conveyor-own-workspace-{id}"));
    let conveyor = repo_root().canonicalize().unwrap();
    let run = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--conveyor", conveyor.to_str().unwrap()]);
        generators::conveyor_new("service", &args, &shop)
    };
    for (args, said) in [
        (
            vec!["loyalty", "--emits", "order.created"],
            "order.created is orders's in Conveyor's contract",
        ),
        (vec!["orders"], "orders is a service already"),
    ] {
        let (ok, output) = run(&args);
        assert!(!ok, "{args:?} was accepted: {output}");
        assert!(output.contains(said), "{args:?}: {output}");
        assert!(!shop.exists(), "{args:?} wrote into {}", shop.display());
    }

    let (ok, output) = run(&[
        "loyalty",
        "--consumes",
        "order.confirmed",
        "--emits",
        "reward.granted",
    ]);
    assert!(ok, "{output}");
    let manifest = std::fs::read_to_string(shop.join("Cargo.toml")).unwrap();
    let to_conveyor = format!("{}/crates/platform", relative_to(&shop, &conveyor));
    assert!(
        manifest.contains(&format!("platform = {{ path = \"{to_conveyor}\" }}")),
        "{manifest}"
    );
    assert!(shop.join("Cargo.lock").is_file());
    let events = std::fs::read_to_string(shop.join("services/loyalty/src/events.rs")).unwrap();
    assert!(events.contains("pub struct RewardGrantedV1"), "{events}");
    let schema = shop.join("services/loyalty/schemas/reward.granted/v1.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema).unwrap()).unwrap();
    assert_eq!(schema["required"][0], "reward_id");
    let lib = std::fs::read_to_string(shop.join("services/loyalty/src/lib.rs")).unwrap();
    assert!(lib.contains("EventContract::with_own_events"), "{lib}");
    assert!(lib.contains("emits: &[\"reward.granted\"]"), "{lib}");

    // A second service joins the workspace it made; the workspace is not written again.
    let (ok, output) = run(&["points", "--consumes", "order.cancelled"]);
    assert!(ok, "{output}");
    assert!(!output.contains("new    Cargo.toml"), "{output}");
    assert_eq!(
        std::fs::read_to_string(shop.join("Cargo.toml")).unwrap(),
        manifest
    );
    std::fs::remove_dir_all(&shop).unwrap();
}

/// `../..`-style path from directory `from` to `to`, both absolute.
fn relative_to(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); from.len() - shared];
    parts.extend(
        to[shared..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}
