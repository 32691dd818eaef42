//! The `conveyor` binary, run as a user runs it, against the real broker.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A valid order.created, as a producer would send it.
const ORDER: &str = r#"{"order_id": "0192f1c4-7e1a-7c3b-9d2e-4f5a6b7c8d9e", "user_id": "11111111-1111-4111-8111-111111111111",
    "items": [{"sku": "MUG-BLUE", "quantity": 2, "unit_price_cents": 1250}], "total_cents": 2500, "currency": "EUR"}"#;

fn conveyor(args: &[&str], amqp_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(args)
        .env("AMQP_URL", amqp_url)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap()
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .arg("-q")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A vhost of the test's own, deleted when it ends.
struct Vhost(String);

impl Vhost {
    fn new() -> Self {
        let name = format!(
            "conveyor-cli-test-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self(name)
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0, "-q"])
            .output();
    }
}

#[test]
fn the_checked_in_definitions_match_what_the_code_declares() {
    let output = conveyor(&["topology", "export", "--check"], "amqp://unused");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_deployment_files_list_every_declared_service() {
    let output = conveyor(&["deploy", "--check"], "amqp://unused");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_books_reference_pages_are_what_the_code_makes() {
    let output = conveyor(&["reference", "--check"], "amqp://unused");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_order_flow_is_checked_listed_and_drawn_from_its_declaration() {
    let unused = "amqp://unused";
    let check = conveyor(&["flow", "check"], unused);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("The flows (order, return) agree"), "{said}");
    let list = conveyor(&["flow", "list"], unused);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("takes part: inventory, payments, shipping, orders"),
        "{listed}"
    );
    assert!(
        listed.contains("takes part: shipping, orders, inventory, payments"),
        "the return flow: {listed}"
    );
    let diagram = conveyor(&["flow", "diagram", "order"], unused);
    let drawn = String::from_utf8_lossy(&diagram.stdout);
    assert!(drawn.starts_with("flowchart TD\n"), "{drawn}");
    assert!(
        drawn.contains("-->|payments| e3[\"payment.captured\"]"),
        "{drawn}"
    );
    assert!(
        drawn.contains("-.->|\"shipping undoes its step on payment.captured\"|"),
        "{drawn}"
    );
    let unknown = conveyor(&["flow", "diagram", "refund"], unused);
    assert_eq!(unknown.status.code(), Some(2));
    let refused = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        refused.contains("[possible values: order, return]"),
        "{refused}"
    );
}

/// A route row edited by hand in the reference is found, and written back from the table.
#[test]
fn a_hand_edited_reference_page_is_found_and_written_again() {
    let root = std::env::temp_dir().join(format!("conveyor-reference-{}", Uuid::new_v4().simple()));
    let repository = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    std::fs::create_dir_all(root.join("docs/src/reference")).unwrap();
    for file in [
        "SUMMARY.md",
        "reference/commands.md",
        "reference/settings.md",
        "reference/routes.md",
        "reference/flows.md",
    ] {
        let from = format!("{repository}/docs/src/{file}");
        std::fs::copy(from, root.join("docs/src").join(file)).unwrap();
    }
    let routes = root.join("docs/src/reference/routes.md");
    let original = std::fs::read_to_string(&routes).unwrap();
    let internal = "| GET | `/cache/users/{id}` | a token with scope `admin` | no: the service's own port only |";
    assert!(original.contains(internal), "{original}");
    let published = internal.replace("no: the service's own port only", "`/api/cache/users/{id}`");
    std::fs::write(&routes, original.replacen(internal, &published, 1)).unwrap();
    let root_arg = root.to_str().unwrap();

    let check = conveyor(
        &["reference", "--check", "--root", root_arg],
        "amqp://unused",
    );
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(said.contains("routes.md differs"), "{said}");
    assert!(said.contains("run `conveyor reference`"), "{said}");

    let write = conveyor(&["reference", "--root", root_arg], "amqp://unused");
    assert!(
        write.status.success(),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    assert_eq!(std::fs::read_to_string(&routes).unwrap(), original);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A service dropped from a generated part by hand is put back, and `--check` says which
/// file drifted before that.
#[test]
fn a_hand_edited_service_list_is_found_and_written_again() {
    let root = std::env::temp_dir().join(format!("conveyor-deploy-{}", Uuid::new_v4().simple()));
    let repository = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for file in [
        "Dockerfile",
        "docker-compose.yml",
        "observability/prometheus.yml",
    ] {
        let copy = root.join(file);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(format!("{repository}/{file}"), &copy).unwrap();
    }
    let prometheus = root.join("observability/prometheus.yml");
    let original = std::fs::read_to_string(&prometheus).unwrap();
    std::fs::write(&prometheus, original.replace("- payments:8084\n", "")).unwrap();
    let root_arg = root.to_str().unwrap();

    let check = conveyor(&["deploy", "--check", "--root", root_arg], "amqp://unused");
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(said.contains("prometheus.yml differs"), "{said}");
    assert!(said.contains("run `conveyor deploy`"), "{said}");

    let write = conveyor(&["deploy", "--root", root_arg], "amqp://unused");
    assert!(
        write.status.success(),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    assert_eq!(std::fs::read_to_string(&prometheus).unwrap(), original);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn exported_definitions_import_into_rabbitmq() {
    let vhost = Vhost::new();
    let file = std::env::temp_dir().join(format!("{}.json", vhost.0));
    let output = conveyor(
        &[
            "topology",
            "export",
            "--vhost",
            &vhost.0,
            "--output",
            file.to_str().unwrap(),
        ],
        &vhost.url(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    rabbitmqctl(&["import_definitions", file.to_str().unwrap()]);

    let queues = Command::new("rabbitmqctl")
        .args(["list_queues", "-p", &vhost.0, "name", "type", "-q"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&queues.stdout);
    assert!(listing.contains("orders.events\tquorum"), "{listing}");
    assert!(listing.contains("payments.dlq\tquorum"), "{listing}");
    assert!(listing.contains("shipping.retry.10s\tquorum"), "{listing}");
    // Applying the code's topology over the imported one must agree on every argument.
    let applied = conveyor(&["topology", "apply"], &vhost.url());
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_published_event_is_seen_by_tail() {
    let vhost = Vhost::new();
    let applied = conveyor(&["topology", "apply"], &vhost.url());
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let mut tail = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args([
            "events", "tail", "--type", "order.*", "--json", "--limit", "1",
        ])
        .env("AMQP_URL", vhost.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The tail announces itself on stderr once its queue is bound; wait for that.
    let stderr = BufReader::new(tail.stderr.take().unwrap());
    let (announced, announcement) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.starts_with("Tailing") {
                let _ = announced.send(());
            }
        }
    });
    if announcement.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = tail.kill();
        panic!("events tail did not announce itself within 30 s");
    }
    let flow = Uuid::now_v7().to_string();

    let published = conveyor(
        &[
            "events",
            "publish",
            "--type",
            "order.created",
            "--data",
            ORDER,
            "--correlation-id",
            &flow,
            "--subject",
            "o-42",
        ],
        &vhost.url(),
    );

    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let event_id = String::from_utf8_lossy(&published.stdout).trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tail.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = tail.kill();
            panic!("events tail did not stop after its one event within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let tailed = tail.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&tailed.stdout);
    let event: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(event["id"], event_id.as_str());
    assert_eq!(event["type"], "order.created");
    assert_eq!(event["correlationid"], flow.as_str());
    assert_eq!(event["subject"], "o-42");
    assert_eq!(event["data"]["total_cents"], 2500);
    assert_eq!(event["dataschema"], "events-schema/order.created/v1");
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failing_exit_status() {
    let vhost = Vhost::new();
    let publish = |event_type: &'static str, data: &'static str| -> [&'static str; 6] {
        ["events", "publish", "--type", event_type, "--data", data]
    };
    let cases = [
        (
            publish("order.created", "{oops"),
            "--data is not valid JSON",
        ),
        (publish("order.created", ORDER), "conveyor topology apply"),
        (publish("order.*", "{}"), "one event type"),
        (
            publish("order.created", r#"{"order_id": "nope"}"#),
            "order.created v1 is invalid: (data): \"user_id\" is a required property",
        ),
        (
            publish("order.shipped", "{}"),
            "unknown event type \"order.shipped\"",
        ),
    ];
    for (args, expected) in cases {
        let output = conveyor(&args, &vhost.url());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let unreachable = conveyor(
        &publish("order.created", ORDER),
        "amqp://guest:guest@127.0.0.1:1/%2f",
    );
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(!unreachable.status.success(), "{stderr}");
    assert!(stderr.contains("could not connect to RabbitMQ"), "{stderr}");
    assert!(
        !stderr.contains("guest:guest"),
        "the password is masked: {stderr}"
    );
}

#[test]
fn commands_that_take_a_service_list_the_roster_and_refuse_other_names() {
    let unused = "amqp://guest:guest@127.0.0.1:1/%2f";
    let roster = "users, inventory, orders, payments, shipping";
    let cases = [
        (
            vec!["serve", "--help"],
            format!("all, {roster}, gateway, console"),
        ),
        (vec!["outbox", "parked", "--help"], roster.to_owned()),
        (
            vec!["cache", "rebuild", "--help"],
            "orders, payments, shipping".to_owned(),
        ),
    ];
    for (args, listed) in cases {
        let output = conveyor(&args, unused);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = format!("[possible values: {listed}]");
        assert!(stdout.contains(&expected), "{args:?}: {stdout}");
    }
    for args in [
        vec!["serve", "ordrs"],
        vec!["outbox", "parked", "--service", "ordrs"],
        vec!["cache", "rebuild", "users"],
    ] {
        let output = conveyor(&args, unused);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("[possible values:"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_benchmark_refuses_a_database_that_is_not_a_benchmarks() {
    let output = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["bench", "runtime", "--messages", "10", "--runs", "1"])
        .env(
            "BENCH_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("names the database \"postgres\", whose outbox and inbox"),
        "{stderr}"
    );
}
