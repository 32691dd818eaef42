//! `conveyor schema`: the contract's tools, run as a developer or CI runs them.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn conveyor_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scratch git repository holding order.created v1 as committed, removed when dropped.
struct ScratchRepo(std::path::PathBuf);

impl ScratchRepo {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("conveyor-schema-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("schemas/order.created")).unwrap();
        std::fs::copy(
            repo_root().join("events-schema/schemas/order.created/v1.json"),
            dir.join("schemas/order.created/v1.json"),
        )
        .unwrap();
        git(&dir, &["init", "-q", "-b", "main"]);
        let repo = Self(dir);
        repo.commit("v1");
        repo
    }

    fn commit(&self, message: &str) {
        git(&self.0, &["add", "."]);
        let identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"];
        git(
            &self.0,
            &[&identity[..], &["commit", "-qm", message]].concat(),
        );
    }

    fn edit(&self, change: impl FnOnce(&mut Value)) {
        let path = self.0.join("schemas/order.created/v1.json");
        let mut schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        change(&mut schema);
        std::fs::write(path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    }

    fn check(&self) -> (bool, String) {
        let output = conveyor_in(
            &self.0,
            &["schema", "check", "--dir", "schemas", "--against", "HEAD"],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }
}

impl Drop for ScratchRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn schema_check_passes_an_optional_field_and_a_new_version() {
    let repo = ScratchRepo::new();
    repo.edit(|schema| {
        schema["properties"]["coupon"] = json!({"type": "string", "maxLength": 20});
    });
    let v3 = repo.0.join("schemas/order.created/v3.json");
    std::fs::copy(repo.0.join("schemas/order.created/v1.json"), v3).unwrap();

    let (passed, output) = repo.check();

    assert!(passed, "{output}");
    assert!(output.contains("no breaking changes"), "{output}");
}

/// A change planted in a schema.
type SchemaEdit = fn(&mut Value);

#[test]
fn schema_check_names_the_event_and_field_of_each_breaking_change() {
    let planted: [(SchemaEdit, &str); 5] = [
        (
            |s| {
                s["properties"].as_object_mut().unwrap().remove("currency");
            },
            "order.created v1: field `currency`: was removed or renamed",
        ),
        (
            |s| s["properties"]["total_cents"]["type"] = json!("string"),
            "order.created v1: field `total_cents`: type changed from integer to string",
        ),
        (
            |s| s["required"].as_array_mut().unwrap().push(json!("coupon")),
            "order.created v1: field `coupon`: became required",
        ),
        (
            |s| s["properties"]["items"]["items"]["properties"]["quantity"]["maximum"] = json!(10),
            "order.created v1: field `items[].quantity`: maximum lowered from 1000 to 10",
        ),
        (
            |s| s["properties"]["currency"]["pattern"] = json!("^EUR$"),
            "order.created v1: field `currency`: pattern changed",
        ),
    ];
    for (change, expected) in planted {
        let repo = ScratchRepo::new();
        repo.edit(change);

        let (passed, output) = repo.check();

        assert!(!passed, "{expected:?} should fail the check");
        assert!(
            output.contains(expected),
            "expected {expected:?} in: {output}"
        );
        assert!(output.contains("new version file"), "{output}");
    }
}

#[test]
fn removing_a_version_file_or_an_enum_value_is_breaking() {
    let repo = ScratchRepo::new();
    std::fs::create_dir_all(repo.0.join("schemas/order.cancelled")).unwrap();
    std::fs::copy(
        repo_root().join("events-schema/schemas/order.cancelled/v1.json"),
        repo.0.join("schemas/order.cancelled/v1.json"),
    )
    .unwrap();
    repo.commit("cancelled");
    let path = repo.0.join("schemas/order.cancelled/v1.json");
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    schema["properties"]["reason"]["enum"] = json!(["payment-declined"]);
    std::fs::write(&path, schema.to_string()).unwrap();
    std::fs::remove_file(repo.0.join("schemas/order.created/v1.json")).unwrap();

    let (passed, output) = repo.check();

    assert!(!passed);
    assert!(
        output.contains("order.created v1: the schema file was removed"),
        "{output}"
    );
    assert!(
        output.contains(
            "order.cancelled v1: field `reason`: enum value \"deadline-passed\" was removed"
        ),
        "{output}"
    );
}

#[test]
fn the_checked_in_asyncapi_document_matches_the_schemas_and_services() {
    let output = conveyor_in(repo_root(), &["schema", "asyncapi", "--check"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn schema_validate_names_the_wrong_field_of_an_event() {
    let dir = std::env::temp_dir();
    let file = dir.join(format!("event-{}.json", uuid::Uuid::new_v4().simple()));
    let event = json!({
        "specversion": "1.0", "id": "0192f1c4-7e1b-7000-8000-000000000001", "source": "/services/payments",
        "type": "payment.captured", "time": "2026-11-26T08:00:00Z", "datacontenttype": "application/json",
        "correlationid": "0192f1c4-7e1b-7000-8000-000000000001",
        "data": { "order_id": "0192f1c4-7e1a-7c3b-9d2e-4f5a6b7c8d9e", "payment_id": "22222222-2222-4222-8222-222222222222",
                  "user_id": "11111111-1111-4111-8111-111111111111", "amount_cents": -5, "currency": "EUR" }
    });
    std::fs::write(&file, event.to_string()).unwrap();

    let output = conveyor_in(&dir, &["schema", "validate", file.to_str().unwrap()]);

    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("/amount_cents: -5 is less than the minimum of 0"),
        "{stderr}"
    );
}

#[test]
fn schema_validate_reads_standard_input_and_says_a_good_event_is_valid() {
    use std::io::Write;
    let event = json!({
        "specversion": "1.0", "id": "0192f1c4-7e1b-7000-8000-000000000002", "source": "/services/payments",
        "type": "payment.captured", "time": "2026-11-26T08:00:00Z", "datacontenttype": "application/json",
        "correlationid": "0192f1c4-7e1b-7000-8000-000000000002",
        "data": { "order_id": "0192f1c4-7e1a-7c3b-9d2e-4f5a6b7c8d9e", "payment_id": "22222222-2222-4222-8222-222222222222",
                  "user_id": "11111111-1111-4111-8111-111111111111", "amount_cents": 500, "currency": "EUR" }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["schema", "validate", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "ok: payment.captured v1 is valid");
}
