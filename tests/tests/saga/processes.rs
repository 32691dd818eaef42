//! Service binaries run as separate operating-system processes, as a deployment runs them:
//! each with its own port (0, read back from its log), pool, consumer and relay.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use system::ServiceName;

/// One running service binary.
pub(crate) struct ServiceProcess {
    pub(crate) service: ServiceName,
    pub(crate) url: String,
    child: Child,
    /// Its last log lines, shown when something goes wrong.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// The binary `cargo test --workspace` built beside this test (every service package has
/// an integration test, which makes cargo build its binary). `cargo test -p system-tests`
/// alone does not rebuild it, so one older than a file it is built from (as cargo's
/// dep-info beside it lists them) is refused rather than tested.
fn binary(service: ServiceName) -> PathBuf {
    built_binary(&format!("{service}-service"))
}

/// The workspace's binary `name`, as [`binary`] finds a service's (`conveyor`, say).
pub(crate) fn built_binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile_dir = test.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join(name);
    let rebuild = "build the service binaries first (cargo build --bins), or run the workspace's tests (scripts/test)";
    let built =
        modified(&path).unwrap_or_else(|| panic!("{} is missing: {rebuild}", path.display()));
    let dep_info = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    let sources = dep_info.split_once(": ").map_or("", |(_, sources)| sources);
    if let Some(newer) = sources
        .split_whitespace()
        .find(|source| modified(Path::new(source)).is_some_and(|changed| changed > built))
    {
        panic!("{} is older than {newer}: {rebuild}", path.display());
    }
    path
}

/// `conveyor ARGS` with every service's database and URL of `system` in its environment.
pub(crate) fn conveyor(system: &crate::helpers::System, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(built_binary("conveyor"));
    command.args(args);
    for service in ServiceName::all() {
        let variable = service.as_str().to_uppercase();
        command.env(
            format!("{variable}_DATABASE_URL"),
            system.database_url(service.as_str()),
        );
    }
    for (service, url) in system.urls() {
        command.env(format!("{}_URL", service.to_uppercase()), url);
    }
    command.output().unwrap()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

impl ServiceProcess {
    /// Starts `service` with `environment` (its database, the broker) on a free port, and
    /// waits until it listens.
    pub(crate) fn spawn(service: ServiceName, environment: &[(String, String)]) -> Self {
        Self::spawn_binary(&binary(service), service, environment)
    }

    /// As [`ServiceProcess::spawn`], with the binary of `service` in `directory` instead of
    /// the one built beside this test: another release's, which no dep-info describes.
    pub(crate) fn spawn_from(
        directory: &Path,
        service: ServiceName,
        environment: &[(String, String)],
    ) -> Self {
        let path = directory.join(format!("{service}-service"));
        assert!(path.is_file(), "{} is missing", path.display());
        Self::spawn_binary(&path, service, environment)
    }

    fn spawn_binary(
        program: &Path,
        service: ServiceName,
        environment: &[(String, String)],
    ) -> Self {
        let prefix = service.as_str().to_ascii_uppercase();
        // `environment` may override the log settings.
        let mut child = Command::new(program)
            .env(format!("{prefix}_PORT"), "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info,lapin=warn")
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (port_sender, port) = std::sync::mpsc::channel();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = started_on(&line) {
                    let _ = port_sender.send(port);
                }
                let mut kept = kept.lock().unwrap();
                kept.push_back(line);
                if kept.len() > 40 {
                    kept.pop_front();
                }
            }
        });
        let port = port
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "{service}-service did not start within 60 s: {:?}",
                    log.lock().unwrap()
                )
            });
        Self {
            service,
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
        }
    }

    /// Its last 40 log lines.
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().cloned().collect()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no clean-up, no flush, unacknowledged deliveries return to the queue.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub(crate) async fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(
                    exit.success(),
                    "{}-service exited with {exit} after SIGTERM: {:?}",
                    self.service,
                    self.log.lock().unwrap()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}-service did not stop within 30 s of SIGTERM",
                self.service
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // A failed test must not leave processes behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port of a JSON log line that says the service started.
fn started_on(line: &str) -> Option<u16> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &entry["fields"];
    (fields["message"] == "Service started.")
        .then(|| fields["port"].as_u64())
        .flatten()
        .and_then(|port| u16::try_from(port).ok())
}
