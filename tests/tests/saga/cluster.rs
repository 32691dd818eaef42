//! The system on a 3-node RabbitMQ cluster (`scripts/cluster-up`): a node stops while
//! orders flow and comes back, and nothing is lost, stuck or applied twice.

use std::time::Duration;

use conveyor_testkit::{Broker, TestEnv};
use system::scenario::{self, LoadOptions, Strays};

use crate::helpers::{ALL, start_on};

/// Connections of `vhost` that `node` holds.
fn connections_on(broker: &Broker, node: &str, vhost: &str) -> usize {
    broker
        .ctl_on(
            Some(node),
            &[
                "list_connections",
                "-p",
                vhost,
                "name",
                "--no-table-headers",
            ],
        )
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count()
}

#[tokio::test]
async fn orders_flow_through_a_broker_node_stopping_and_coming_back() {
    let broker = Broker::cluster();
    assert_eq!(broker.nodes.len(), 3, "the cluster has three running nodes");
    let env = TestEnv::on(broker.clone()).await;
    let vhost = env.vhost.clone();
    let system = start_on(env, &ALL, Duration::from_secs(60)).await;
    let fixtures = scenario::prepare(&system.api).await.unwrap();
    let load = LoadOptions {
        orders: 400,
        concurrency: 16,
        rate: Some(40.0),
        cancel_every: 5,
        cancel_within: Duration::from_millis(50),
    };
    let api = system.api.clone();
    let placing = {
        let fixtures = fixtures.clone();
        tokio::spawn(async move { scenario::place(&api, &fixtures, &load, |_| {}).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The victim holds some of the services' connections, so the fault hits them.
    let victim = broker
        .nodes
        .iter()
        .max_by_key(|node| connections_on(&broker, node, &vhost))
        .unwrap()
        .clone();
    let held = connections_on(&broker, &victim, &vhost);

    broker.ctl_on(Some(&victim), &["stop_app"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.ctl_on(Some(&victim), &["start_app"]);
    broker.ctl_on(Some(&victim), &["await_startup"]);
    let placed = placing.await.unwrap().unwrap();
    let report = scenario::settle(
        &system.api,
        &system.env.amqp,
        &fixtures,
        &placed,
        Duration::from_secs(180),
        Strays::default(),
    )
    .await
    .unwrap();
    system.stop().await;

    assert!(held > 0, "{victim} held none of the services' connections");
    assert_eq!(report.placed, 400);
    for invariant in &report.invariants {
        assert!(invariant.ok, "{}: {}", invariant.name, invariant.detail);
    }
    assert!(report.confirmed > 200, "{report:?}");
}
