//! The subject as a child process: started with `sh -c` in a process group of its own (so a
//! kill reaches whatever the command started), its output appended to the run's log.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::sandbox::Sandbox;
use super::{RETRY_TIERS, SERVICE};

/// How long a subject may take to start consuming (a cold interpreter, a first migration).
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a stopped subject gets to finish its batch before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

pub(crate) struct SubjectProcess {
    command: String,
    log: PathBuf,
    env: Vec<(&'static str, String)>,
    child: Child,
}

impl SubjectProcess {
    /// Starts `command` with the sandbox's settings in its environment.
    ///
    /// # Errors
    /// When the log cannot be opened or `sh` cannot be started.
    pub(crate) fn start(command: &str, sandbox: &Sandbox, log: &Path) -> anyhow::Result<Self> {
        let tiers = RETRY_TIERS
            .iter()
            .map(|tier| tier.as_millis().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let env = vec![
            ("AMQP_URL", sandbox.subject.amqp.url()),
            ("DATABASE_URL", sandbox.database_url.clone()),
            ("CONVEYOR_NAME_PREFIX", sandbox.names.prefix().to_owned()),
            ("CONVEYOR_CONFORMANCE_SERVICE", SERVICE.to_owned()),
            ("CONVEYOR_CONFORMANCE_RETRY_TIERS_MS", tiers),
        ];
        let child = spawn(command, &env, log)?;
        Ok(Self {
            command: command.to_owned(),
            log: log.to_owned(),
            env,
            child,
        })
    }

    /// Waits until the subject consumes from its queue.
    ///
    /// # Errors
    /// When it exits first, or is not consuming within a minute; the error ends with the
    /// tail of its log.
    pub(crate) async fn wait_until_consuming(&mut self, sandbox: &Sandbox) -> anyhow::Result<()> {
        let queue = sandbox.names.service_queue(SERVICE);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the subject exited ({status}) before consuming from {queue}; its output:\n{}",
                    self.log_tail()
                );
            }
            if consumers(sandbox, &queue).await? > 0 {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < START_LIMIT,
                "the subject did not consume from {queue} within {} s; its output:\n{}",
                START_LIMIT.as_secs(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL to the whole group, as a crash or the OOM killer would; then starts the
    /// command again.
    ///
    /// # Errors
    /// When the signal or the restart fail.
    pub(crate) async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        signal_group(&self.child, "KILL")?;
        let _ = self.child.wait();
        self.wait_until_group_ends(STOP_LIMIT).await;
        self.child = spawn(&self.command, &self.env, &self.log)?;
        Ok(())
    }

    /// SIGTERM to the group, then SIGKILL after [`STOP_LIMIT`]. The group, not the shell:
    /// `sh -c` may end at once while the command it started is still finishing its batch.
    pub(crate) async fn stop(mut self) {
        let _ = signal_group(&self.child, "TERM");
        if !self.wait_until_group_ends(STOP_LIMIT).await {
            let _ = signal_group(&self.child, "KILL");
            self.wait_until_group_ends(STOP_LIMIT).await;
        }
    }

    /// Whether every process of the group ended within `limit`.
    async fn wait_until_group_ends(&mut self, limit: Duration) -> bool {
        let asked = Instant::now();
        while asked.elapsed() < limit {
            let _ = self.child.try_wait();
            if signal_group(&self.child, "0").is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The last lines the subject wrote, for a report.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for SubjectProcess {
    /// A run cut short (an error, Ctrl-C) leaves no subject behind.
    fn drop(&mut self) {
        if signal_group(&self.child, "0").is_ok() {
            let _ = signal_group(&self.child, "KILL");
            let _ = self.child.wait();
        }
    }
}

fn spawn(command: &str, env: &[(&str, String)], log: &Path) -> anyhow::Result<Child> {
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening the subject's log {}", log.display()))?;
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the subject: sh -c {command:?}"))
}

/// Sends SIGNAL to the group the child leads.
fn signal_group(child: &Child, signal: &str) -> anyhow::Result<()> {
    let group = format!("-{}", child.id());
    let status = Command::new("kill")
        .args([&format!("-{signal}"), "--", &group])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    anyhow::ensure!(
        status.success(),
        "kill -{signal} -- {group} failed ({status})"
    );
    Ok(())
}

/// Consumers of `queue` now; 0 while it does not exist.
pub(crate) async fn consumers(sandbox: &Sandbox, queue: &str) -> anyhow::Result<u32> {
    let connection = sandbox.admin.connect().await?;
    let channel = connection.create_channel().await?;
    let declared = conveyor::declare_passive(&channel, queue).await;
    conveyor::close_within(&connection, "checked", Duration::from_secs(5)).await;
    Ok(declared.map_or(0, |queue| queue.consumer_count()))
}
