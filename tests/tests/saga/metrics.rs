//! `GET /metrics`: the counters and histograms move as an order's events pass.
//!
//! Every service of this test binary shares one process-wide registry, and tests run in
//! parallel, so each check is a change between two readings that this test's order must
//! cause at the least.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ALL, System, start};

/// One sample of `name` whose labels include every one of `labels`, summed over the rest.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(system: &System, service: &str) -> String {
    let url = format!("{}/metrics", system.urls()[service]);
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn counters_and_histograms_move_as_an_order_passes() {
    let system = start(&ALL, Duration::from_secs(60)).await;
    let (user, sku) = system.customer_and_product(900, 10).await;
    let before = scrape(&system, "orders").await;

    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order = system.final_order(placed["id"].as_str().unwrap()).await;
    assert_eq!(order["status"], "confirmed");
    // The gauges are sampled every 5 s; the counters move at once.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let after = scrape(&system, "orders").await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let scheduled = [("service", "orders"), ("event_type", "shipment.scheduled")];
    assert!(
        moved(
            "conveyor_events_consumed_total",
            &[scheduled[0], scheduled[1], ("outcome", "handled")]
        ) >= 1.0,
        "{after}"
    );
    assert!(moved("conveyor_handler_duration_seconds_count", &scheduled) >= 1.0);
    assert!(
        moved(
            "conveyor_events_published_total",
            &[("event_type", "order.created")]
        ) >= 1.0
    );
    assert!(
        moved(
            "conveyor_events_published_total",
            &[("event_type", "order.confirmed")]
        ) >= 1.0
    );
    assert!(moved("conveyor_saga_outcomes_total", &[("outcome", "confirmed")]) >= 1.0);
    assert!(
        moved(
            "conveyor_saga_duration_seconds_count",
            &[("outcome", "confirmed")]
        ) >= 1.0
    );
    assert!(
        moved(
            "http_requests_total",
            &[
                ("service", "orders"),
                ("route", "/orders"),
                ("method", "POST")
            ]
        ) >= 1.0
    );
    assert!(
        moved(
            "http_request_duration_seconds_count",
            &[("service", "orders")]
        ) >= 1.0
    );
    for gauge in [
        "conveyor_outbox_backlog",
        "conveyor_outbox_oldest_unsent_age_seconds",
        "conveyor_consumer_lag_messages",
    ] {
        assert!(
            after.contains(&format!("{gauge}{{service=\"orders\"}}")),
            "{gauge} is sampled: {after}"
        );
    }
    assert!(
        value(
            &after,
            "db_pool_connections",
            &[("service", "orders"), ("state", "max")]
        ) >= 1.0
    );
    assert!(after.contains("conveyor_cache_age_seconds{copy=\"products\",service=\"orders\"}"));
    every_dashboard_query_names_exposed_metrics(&after);
    system.stop().await;
}

/// The Grafana dashboard of docker-compose.yml asks only for series `/metrics` exposes.
fn every_dashboard_query_names_exposed_metrics(exposed: &str) {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../../observability/grafana/dashboards/conveyor.json"
    ))
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| {
                    ["conveyor_", "http_", "db_pool_"]
                        .iter()
                        .any(|prefix| word.starts_with(prefix))
                });
            for name in names {
                assert!(
                    exposed.contains(&format!("\n{name}{{")),
                    "panel {:?} asks for {name}, which /metrics does not expose",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 13, "the dashboard's queries were read");
}
