//! Which RabbitMQ a test talks to: the local node, or the 3-node cluster of
//! `scripts/cluster-up`, and the `rabbitmqctl` calls that manage it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The node the cluster's scripts start first; the others join it.
const CLUSTER_SEED: &str = "conveyor1@localhost";

/// A RabbitMQ broker: one node or a cluster.
#[derive(Debug, Clone)]
pub struct Broker {
    /// The node `rabbitmqctl` manages vhosts through; the local default node when `None`.
    node: Option<String>,
    /// `host:port` of each node's AMQP listener.
    hosts: Vec<String>,
    /// Every node, for faults.
    pub nodes: Vec<String>,
}

impl Broker {
    /// The local node on 127.0.0.1:5672.
    pub fn local() -> Self {
        Self {
            node: None,
            hosts: vec!["127.0.0.1:5672".to_owned()],
            nodes: Vec::new(),
        }
    }

    /// The 3-node cluster of `scripts/cluster-up`, started if it is not up (the script is
    /// harmless when it is); `scripts/test` stops it again when it started it.
    pub fn cluster() -> Self {
        static CLUSTER: OnceLock<Broker> = OnceLock::new();
        CLUSTER.get_or_init(start_cluster).clone()
    }

    /// The AMQP URL of `vhost` on every node, comma-separated.
    pub fn url(&self, vhost: &str) -> String {
        self.hosts
            .iter()
            .map(|host| format!("amqp://guest:guest@{host}/{vhost}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first node's AMQP listener.
    pub fn first_address(&self) -> std::net::SocketAddr {
        self.hosts[0].parse().expect("broker hosts are IP:port")
    }

    /// The AMQP URL of `vhost` on every node for `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str, vhost: &str) -> String {
        self.hosts
            .iter()
            .map(|host| format!("amqp://{user}:{password}@{host}/{vhost}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `rabbitmqctl` against this broker; panics with its output when it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let node = self.node.clone();
        self.ctl_on(node.as_deref(), args)
    }

    /// Runs `rabbitmqctl` against one node of this broker.
    pub fn ctl_on(&self, node: Option<&str>, args: &[&str]) -> String {
        let mut command = Command::new("rabbitmqctl");
        if let Some(node) = node {
            command.args(["-n", node]);
        }
        let output = command
            .args(args)
            .arg("-q")
            .output()
            .expect("rabbitmqctl runs (tests need a local RabbitMQ)");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `rabbitmqctl` against this broker; `None` when it fails.
    pub(crate) fn try_ctl(&self, args: &[&str]) -> Option<String> {
        self.try_ctl_on(self.node.as_deref(), args)
    }

    /// Runs `rabbitmqctl` against one node (the managing one when `None`); `None` when it
    /// fails.
    pub(crate) fn try_ctl_on(&self, node: Option<&str>, args: &[&str]) -> Option<String> {
        let mut command = Command::new("rabbitmqctl");
        if let Some(node) = node.or(self.node.as_deref()) {
            command.args(["-n", node]);
        }
        let output = command.args(args).arg("-q").output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `rabbitmqctl` and ignores its failure (clean-up).
    pub(crate) fn ctl_quietly(&self, args: &[&str]) {
        let mut command = Command::new("rabbitmqctl");
        if let Some(node) = &self.node {
            command.args(["-n", node]);
        }
        let _ = command.args(args).arg("-q").output();
    }
}

fn start_cluster() -> Broker {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-up");
    let output = Command::new(&script)
        .output()
        .unwrap_or_else(|error| panic!("{} cannot run: {error}", script.display()));
    assert!(
        output.status.success(),
        "scripts/cluster-up failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let hosts = url
        .split(',')
        .filter_map(|url| url.split_once('@').map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('/').map(|(host, _)| host.to_owned()))
        .collect();
    let status = Command::new("rabbitmqctl")
        .args(["-n", CLUSTER_SEED, "cluster_status", "--formatter", "json"])
        .output()
        .expect("rabbitmqctl runs");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let nodes = status["running_nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|node| node.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Broker {
        node: Some(CLUSTER_SEED.to_owned()),
        hosts,
        nodes,
    }
}
