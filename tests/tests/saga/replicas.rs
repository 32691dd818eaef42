//! Three processes of every service binary on one database each and one vhost: orders
//! placed across every orders process, customers cancelling at once, one process of each
//! service killed with SIGKILL mid-way — and the books still balance.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use conveyor::Names;
use conveyor_testkit::TestEnv;
use system::ServiceName;
use system::scenario::{self, Api, LoadOptions, Strays};

use crate::processes::ServiceProcess;

const REPLICAS: usize = 3;

/// Every service's environment: the test's vhost, one database per service, small pools
/// (fifteen processes share Postgres's connections).
async fn environment(env: &TestEnv) -> Vec<(String, String)> {
    let mut variables = vec![("AMQP_URL".to_owned(), env.amqp.url())];
    for service in ServiceName::all() {
        let prefix = service.as_str().to_ascii_uppercase();
        let url = env.create_database(service.as_str()).await;
        variables.push((format!("{prefix}_DATABASE_URL"), url));
        variables.push((format!("{prefix}_DATABASE_POOL_SIZE"), "4".to_owned()));
        // Competing workers inside each process as well as between processes.
        variables.push((format!("{prefix}_CONSUMER_WORKERS"), "2".to_owned()));
    }
    variables
}

/// A client of every process, signed in as `admin`.
async fn api(processes: &[ServiceProcess], admin: &users_service::AdminAccount) -> Api {
    let mut urls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for process in processes {
        urls.entry(process.service.to_string())
            .or_default()
            .push(process.url.clone());
    }
    Api::with_replicas(urls)
        .unwrap()
        .signed_in(&admin.email, &admin.password)
        .await
        .unwrap()
}

async fn wait_until_ready(processes: &[ServiceProcess]) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for process in processes {
        let url = format!("{}/readyz", process.url);
        while !client
            .get(&url)
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success())
        {
            assert!(Instant::now() < deadline, "{url} is not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn three_processes_of_each_service_keep_the_books_while_one_of_each_is_killed() {
    let env = TestEnv::new().await;
    let admin = system::run_admin();
    let mut variables = environment(&env).await;
    variables.push(("CONVEYOR_ADMIN_EMAIL".to_owned(), admin.email.clone()));
    variables.push(("CONVEYOR_ADMIN_PASSWORD".to_owned(), admin.password.clone()));
    env.declare(&system::all_topology(&Names::default()).unwrap())
        .await;
    // users first: the other services check tokens against the keys it publishes.
    let mut processes: Vec<ServiceProcess> = (0..REPLICAS)
        .map(|_| ServiceProcess::spawn(ServiceName::USERS, &variables))
        .collect();
    wait_until_ready(&processes).await;
    variables.push(("USERS_URL".to_owned(), processes[0].url.clone()));
    for _ in 0..REPLICAS {
        for service in ServiceName::all().filter(|service| *service != ServiceName::USERS) {
            processes.push(ServiceProcess::spawn(service, &variables));
        }
    }
    wait_until_ready(&processes).await;
    let everyone = api(&processes, &admin).await;
    let fixtures = scenario::prepare(&everyone).await.unwrap();
    // About two in five orders are cancelled by their customer within 150 ms of placing
    // it, racing every step of the saga.
    let half = LoadOptions {
        orders: 250,
        concurrency: 48,
        rate: None,
        cancel_every: 2,
        cancel_within: Duration::from_millis(40),
        // None yet: a customer waits for an order to be confirmed before returning it, so
        // the orders of the first half would all have ended before the kills.
        return_every: 0,
    };

    let mut placed = scenario::place(&everyone, &fixtures, &half, |_| {})
        .await
        .unwrap();
    let in_flight = scenario::pending_orders(&everyone, &fixtures)
        .await
        .unwrap();
    // One process of each consuming service dies at once, with work in its hands.
    let killed = [
        ServiceName::INVENTORY,
        ServiceName::PAYMENTS,
        ServiceName::SHIPPING,
        ServiceName::ORDERS,
    ];
    for service in killed {
        let victim = processes
            .iter()
            .position(|process| process.service == service)
            .unwrap();
        processes.remove(victim).kill();
    }
    let survivors = api(&processes, &admin).await;
    // Returns too, on the survivors, while they take over the killed processes' work.
    let with_returns = LoadOptions {
        return_every: 10,
        ..half
    };
    placed.extend(
        scenario::place(&survivors, &fixtures, &with_returns, |_| {})
            .await
            .unwrap(),
    );
    let report = scenario::settle(
        &survivors,
        &env.amqp,
        &fixtures,
        &placed,
        Duration::from_secs(180),
        Strays::default(),
    )
    .await
    .unwrap();
    for process in processes {
        process.stop().await;
    }

    assert!(in_flight > 0, "the kills hit no order in flight");
    assert_eq!(report.placed, 500);
    for invariant in &report.invariants {
        assert!(invariant.ok, "{}: {}", invariant.name, invariant.detail);
    }
    assert!(report.customer_cancels_accepted > 0, "{report:?}");
    assert!(report.compensations["payments refunded"] > 0, "{report:?}");
    assert!(
        report
            .returns
            .get("closed")
            .is_some_and(|closed| *closed > 0),
        "{report:?}"
    );
    assert!(report.confirmed > 100, "{report:?}");
}
