//! `conveyor conformance run` against the Rust runtime (`conveyor conformance subject`):
//! every case of the consumer protocol passes, and the run leaves no vhost, broker user or
//! database behind. (The Python tests run it against the reference Python consumer, and
//! against a naive one it must fail.)

use std::process::Command;

use serde_json::Value;

#[test]
fn the_rust_runtime_passes_every_case_of_the_consumer_protocol() {
    let conveyor = env!("CARGO_BIN_EXE_conveyor");
    let subject = format!("'{conveyor}' conformance subject");
    let output = Command::new(conveyor)
        .args(["conformance", "run", "--json", "--subject", &subject])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{stderr}"));
    let cases = report["cases"]
        .as_array()
        .expect("the report lists its cases");
    let failed: Vec<&Value> = cases.iter().filter(|case| case["ok"] != true).collect();
    assert!(
        failed.is_empty() && output.status.success(),
        "failed cases: {failed:#?}\nstderr:\n{stderr}"
    );
    let names: Vec<&str> = cases
        .iter()
        .filter_map(|case| case["name"].as_str())
        .collect();
    for expected in [
        "duplicate-after-commit",
        "retries-exhausted",
        "forged-source",
        "oversized",
        "dropped-connection",
        "killed",
    ] {
        assert!(names.contains(&expected), "no case {expected} in {names:?}");
    }
    let log = report["subject_log"].as_str().unwrap_or_default();
    assert!(
        !std::path::Path::new(log).exists(),
        "a passing run keeps no log of its own: {log}"
    );
}

#[test]
fn the_bench_times_a_subject_beside_the_rust_runtime() {
    let conveyor = env!("CARGO_BIN_EXE_conveyor");
    let subject = format!("'{conveyor}' conformance subject");
    let output = Command::new(conveyor)
        .args([
            "conformance",
            "bench",
            "--json",
            "--events",
            "300",
            "--rounds",
            "1",
        ])
        .args(["--subject", &subject])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr:\n{stderr}");
    let figures: Value = serde_json::from_slice(&output.stdout).unwrap();
    for series in ["rust_events_per_second", "subject_events_per_second"] {
        let rates = figures[series].as_array().expect("one rate per round");
        assert_eq!(rates.len(), 1, "{figures}");
        assert!(
            rates[0].as_f64().is_some_and(|rate| rate > 0.0),
            "{figures}"
        );
    }
}
