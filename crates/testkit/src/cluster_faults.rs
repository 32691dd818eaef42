//! Faults on the 3-node cluster of `scripts/cluster-up`: one test process at a time may
//! hurt it ([`FaultLock`]), a node killed with SIGKILL is brought back and every quorum
//! queue is whole again before the lock is released, even when the test fails
//! ([`KilledNode`]), and quorum queue leaders are read and moved.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker::Broker;

/// How long a killed node may take to come back and its queues to have every member online.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(180);

/// Held while a test hurts the cluster: test binaries run in parallel processes, and a
/// second fault (or a memory alarm) on top of the first would leave a queue without quorum.
pub struct FaultLock {
    _file: File,
}

impl FaultLock {
    /// Waits for the cluster's fault lock (a file lock, so it holds across processes and is
    /// released when the process dies).
    pub fn acquire() -> Self {
        let dir = std::env::var_os("CONVEYOR_CLUSTER_DIR").map_or_else(
            || std::env::temp_dir().join("conveyor-cluster"),
            PathBuf::from,
        );
        let file = File::create(lock_path(&dir)).expect("the fault lock file opens");
        file.lock().expect("the cluster's fault lock is taken");
        Self { _file: file }
    }
}

/// Beside the cluster's directory, not in it: a test takes the lock before it starts the
/// cluster, and `scripts/cluster-up` refuses a directory holding files it did not make.
fn lock_path(cluster_dir: &Path) -> PathBuf {
    let mut name = cluster_dir.as_os_str().to_owned();
    name.push(".faults.lock");
    PathBuf::from(name)
}

impl Broker {
    /// The node leading quorum queue `queue` of `vhost`, as the first node that answers
    /// says (the managing node may be the one a test killed).
    pub fn leader_of(&self, vhost: &str, queue: &str) -> Option<String> {
        self.nodes.iter().find_map(|node| {
            self.queue_columns_on(Some(node), vhost, &["leader"])?
                .into_iter()
                .find(|(name, _)| name == queue)
                .and_then(|(_, columns)| columns.into_iter().next())
        })
    }

    /// Moves the leadership of quorum queue `queue` of `vhost` to `node`, and waits until
    /// the broker says it is there.
    pub fn move_leader(&self, vhost: &str, queue: &str, node: &str) {
        let expression = format!(
            "{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"{vhost}\">>, queue, <<\"{queue}\">>)), \
             rabbit_quorum_queue:transfer_leadership(Q, '{node}')."
        );
        self.ctl(&["eval", &expression]);
        let moved = poll(Duration::from_secs(30), || {
            self.leader_of(vhost, queue).as_deref() == Some(node)
        });
        assert!(moved, "the leader of {queue} did not move to {node}");
    }

    /// Kills `node`'s Erlang VM with SIGKILL: no goodbye to peers or clients, its quorum
    /// queue members gone with it. The node comes back when the guard is dropped.
    pub fn kill_node(&self, node: &str) -> KilledNode {
        let pid = self
            .ctl_on(Some(node), &["eval", "os:getpid()."])
            .trim()
            .trim_matches('"')
            .to_owned();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGKILL of {node} (pid {pid}) failed");
        KilledNode {
            broker: self.clone(),
            node: node.to_owned(),
        }
    }

    /// Every queue of `vhost` with the given `list_queues` columns; `None` when the broker
    /// does not answer.
    fn queue_columns(&self, vhost: &str, columns: &[&str]) -> Option<Vec<(String, Vec<String>)>> {
        self.queue_columns_on(None, vhost, columns)
    }

    /// As `queue_columns`, asking `node` (the managing node when `None`).
    fn queue_columns_on(
        &self,
        node: Option<&str>,
        vhost: &str,
        columns: &[&str],
    ) -> Option<Vec<(String, Vec<String>)>> {
        let mut args = vec!["list_queues", "-p", vhost, "name"];
        args.extend_from_slice(columns);
        args.push("--no-table-headers");
        let listed = self.try_ctl_on(node, &args)?;
        Some(
            listed
                .lines()
                .filter_map(|line| {
                    let mut fields = line.split('\t').map(|field| field.trim().to_owned());
                    let name = fields.next().filter(|name| !name.is_empty())?;
                    Some((name, fields.collect()))
                })
                .collect(),
        )
    }

    /// Whether every quorum queue of `vhost` has all its members online (false when the
    /// broker does not answer).
    fn queues_whole(&self, vhost: &str) -> bool {
        self.queue_columns(vhost, &["type", "members", "online"])
            .is_some_and(|queues| {
                queues
                    .iter()
                    .filter(|(_, columns)| columns.first().is_some_and(|kind| kind == "quorum"))
                    .all(|(_, columns)| {
                        let members = columns.get(1).map(|list| node_set(list));
                        members.is_some() && members == columns.get(2).map(|list| node_set(list))
                    })
            })
    }
}

/// A node killed by a test; dropping it restarts the node (`scripts/cluster-up` repairs the
/// cluster) and waits until every quorum queue of every vhost has all its members online.
pub struct KilledNode {
    broker: Broker,
    node: String,
}

impl KilledNode {
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Drop for KilledNode {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster-up");
        let output = Command::new(&script).output();
        let restarted = output.as_ref().is_ok_and(|output| output.status.success());
        let whole = restarted
            && poll(RECOVERY_TIMEOUT, || {
                let vhosts = self.broker.try_ctl(&["list_vhosts", "--no-table-headers"]);
                vhosts.is_some_and(|vhosts| {
                    vhosts
                        .lines()
                        .map(str::trim)
                        .filter(|vhost| !vhost.is_empty())
                        .all(|vhost| self.broker.queues_whole(vhost))
                })
            });
        if !whole && !std::thread::panicking() {
            panic!(
                "{} did not come back with every quorum queue whole: {:?}",
                self.node,
                output.map(|output| String::from_utf8_lossy(&output.stderr).into_owned())
            );
        }
    }
}

/// The nodes of a `list_queues` node list (`[a@h, b@h]`), sorted.
fn node_set(list: &str) -> Vec<&str> {
    let mut nodes: Vec<&str> = list
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect();
    nodes.sort_unstable();
    nodes
}

/// Polls `condition` every 200 ms until it holds or `within` passes.
fn poll(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_lock_leaves_the_cluster_directory_to_cluster_up() {
        let dir = Path::new("clusters/conveyor-cluster");
        let lock = lock_path(dir);
        assert!(!lock.starts_with(dir), "{}", lock.display());
        assert_eq!(lock, Path::new("clusters/conveyor-cluster.faults.lock"));
    }
}
