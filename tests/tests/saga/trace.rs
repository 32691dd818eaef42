//! `conveyor saga trace` and `saga stuck`, read from the services' own records of real runs.

use std::collections::BTreeMap;
use std::time::Duration;

use flows::trace::{self as flow_trace, Outcome, Sources, WaitAction};
use serde_json::json;
use system::ServiceName;

use crate::helpers::{ALL, System, start};
use crate::processes::conveyor;

fn order_flow() -> &'static flows::Flow {
    system::flow_named("order").unwrap()
}

async fn sources(system: &System) -> Sources {
    let mut databases = BTreeMap::new();
    for service in ServiceName::all() {
        let pool = sqlx::PgPool::connect(&system.database_url(service.as_str()))
            .await
            .unwrap();
        databases.insert(service.as_str(), pool);
    }
    let urls = system
        .urls()
        .into_iter()
        .map(|(service, url)| (ServiceName::parse(&service).unwrap().as_str(), url))
        .collect();
    Sources {
        databases,
        amqp: Some(system.env.amqp.clone()),
        names: system.names.clone(),
        urls,
    }
}

#[tokio::test]
async fn a_compensated_order_traces_every_step_in_order_and_owes_nothing() {
    let system = start(&ALL, Duration::from_secs(30)).await;
    let user = system.user("AQ", 1_000_000).await;
    let sku = system.product(1250, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &ALL).await;
    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order_id: uuid::Uuid = placed["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        system.final_order(&order_id.to_string()).await["status"],
        "cancelled"
    );
    system.wait_until_refunded(&order_id.to_string()).await;
    let sources = sources(&system).await;
    let map = system::flow_map(&system.names).unwrap();
    let finished = |trace: &flow_trace::Trace| {
        trace.events.len() == 7
            && trace.events.iter().all(|event| {
                event.handlers.iter().all(|handling| {
                    matches!(
                        handling.outcome,
                        Outcome::Handled {
                            attempt: Some(_),
                            ..
                        }
                    )
                })
            })
    };
    let mut trace = flow_trace::trace(&sources, &map, order_flow(), order_id)
        .await
        .unwrap()
        .unwrap();
    for _ in 0..100 {
        if finished(&trace) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        trace = flow_trace::trace(&sources, &map, order_flow(), order_id)
            .await
            .unwrap()
            .unwrap();
    }

    let steps: Vec<(&str, String)> = trace
        .events
        .iter()
        .map(|event| (event.event_type.as_str(), event.emitted_by.to_string()))
        .collect();
    assert_eq!(
        steps[..5],
        [
            ("order.created", "orders".to_owned()),
            ("inventory.reserved", "inventory".to_owned()),
            ("payment.captured", "payments".to_owned()),
            ("shipment.failed", "shipping".to_owned()),
            ("order.cancelled", "orders".to_owned()),
        ]
    );
    let mut compensations: Vec<&str> = steps[5..].iter().map(|(event, _)| *event).collect();
    compensations.sort_unstable();
    assert_eq!(compensations, ["inventory.released", "payment.refunded"]);
    let cancelled = &trace.events[4];
    let mut undone: Vec<String> = cancelled
        .handlers
        .iter()
        .map(|handling| handling.service.to_string())
        .collect();
    undone.sort();
    assert_eq!(undone, ["inventory", "payments", "shipping"]);
    assert!(
        finished(&trace),
        "every handler handled its event, and the inbox says on which attempt: {trace:#?}"
    );
    assert!(trace.waiting.is_none());
    assert!(trace.diagnosis.is_empty(), "{:?}", trace.diagnosis);
    system.stop().await;
}

#[tokio::test]
async fn a_stuck_order_is_found_with_the_service_and_step_it_waits_on() {
    let running = ["users", "inventory", "orders", "shipping"];
    let system = start(&running, Duration::from_secs(300)).await;
    let user = system.user("FR", 1_000_000).await;
    let sku = system.product(700, 10).await;
    system.wait_for_caches(&[&user], &[&sku], &running).await;
    let placed = system
        .place(&user, json!([{ "sku": sku, "quantity": 1 }]))
        .await;
    let order_id: uuid::Uuid = placed["id"].as_str().unwrap().parse().unwrap();
    let payments_queue = system.names.service_queue("payments");
    system
        .eventually("inventory.reserved waits for payments", || async {
            system.env.queue_len(&payments_queue).await > 0
        })
        .await;
    let sources = sources(&system).await;
    let map = system::flow_map(&system.names).unwrap();

    let report = flow_trace::stuck(&sources, &map, order_flow(), Duration::ZERO, 10)
        .await
        .unwrap();

    assert_eq!(report.running, 1);
    let trace = &report.runs[0];
    assert_eq!(trace.run.id, order_id);
    let waiting = trace
        .waiting
        .as_ref()
        .expect("a pending order waits on a step");
    assert_eq!(waiting.service, "payments");
    assert_eq!(waiting.event_type, "inventory.reserved");
    assert_eq!(waiting.action, WaitAction::Handle);
    let rules: Vec<_> = trace.diagnosis.iter().map(|finding| finding.rule).collect();
    assert_eq!(
        rules[..2],
        ["not-ready", "no-consumer"],
        "{:?}",
        trace.diagnosis
    );
    assert!(trace.diagnosis[0].message.contains("payments"));

    // The same through the commands an operator runs: the flow is found from the id, and
    // `saga` answers for the order flow in its own words.
    let id = order_id.to_string();
    let traced = conveyor(&system, &["flow", "trace", &id, "--json", "--no-broker"]);
    assert!(traced.status.success(), "{traced:?}");
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    assert_eq!(traced["flow"], "order", "{traced}");
    assert_eq!(traced["run"]["id"], id.as_str(), "{traced}");
    assert_eq!(traced["waiting"]["service"], "payments", "{traced}");
    let saga_json = conveyor(&system, &["saga", "trace", &id, "--json", "--no-broker"]);
    let saga_json: serde_json::Value = serde_json::from_slice(&saga_json.stdout).unwrap();
    assert_eq!(saga_json["order"]["id"], id.as_str(), "{saga_json}");
    let saga = conveyor(&system, &["saga", "trace", &id, "--no-broker"]);
    let text = String::from_utf8_lossy(&saga.stdout);
    assert!(text.starts_with(&format!("order {id}  pending")), "{text}");
    let stuck = conveyor(
        &system,
        &["flow", "stuck", "--older-than", "0s", "--no-broker"],
    );
    let refusal = String::from_utf8_lossy(&stuck.stderr);
    assert_eq!(stuck.status.code(), Some(1), "{refusal}");
    assert!(
        refusal.contains("1 runs of order going for longer than 0s"),
        "{refusal}"
    );
    system.stop().await;
}
