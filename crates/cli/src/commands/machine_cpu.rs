//! What a run costs the machine: the CPU time of this process, of RabbitMQ and of Postgres,
//! read from /proc at two moments. Throughput on a small machine is CPU per order, and most
//! of an order's CPU is spent outside this process.

use std::path::Path;

/// Linux reports a process's times in USER_HZ ticks: 100 a second on x86-64 and arm64, where
/// Conveyor runs.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far, by whom.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct CpuSeconds {
    /// This process: the services, the gateway and, unless counted apart, the client.
    pub(crate) this_process: f64,
    /// The thread that called [`CpuSeconds::now`] (the demo's client runs on one of its own).
    pub(crate) this_thread: f64,
    /// Every RabbitMQ node's Erlang VM on the machine (`beam.smp`).
    pub(crate) rabbitmq: f64,
    /// Every Postgres process, with the backends that ended since it started (counted in
    /// its postmaster's children's time).
    pub(crate) postgres: f64,
    /// Every core's busy time, and all time, from /proc/stat: how busy the machine was.
    pub(crate) machine_busy: f64,
    pub(crate) machine_total: f64,
}

impl CpuSeconds {
    /// The figures now.
    pub(crate) fn now() -> Self {
        let own = |path: &str| read_stat(Path::new(path)).map_or(0.0, |stat| stat.own);
        let (machine_busy, machine_total) = machine_times();
        let mut figures = Self {
            this_process: own("/proc/self/stat"),
            this_thread: own("/proc/thread-self/stat"),
            machine_busy,
            machine_total,
            ..Self::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return figures;
        };
        let processes: Vec<Stat> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|entry| read_stat(&entry.path().join("stat")))
            .collect();
        for process in &processes {
            match process.comm.as_str() {
                "beam.smp" => figures.rabbitmq += process.own,
                "postgres" => {
                    figures.postgres += process.own;
                    let parent_is_postgres = processes
                        .iter()
                        .any(|parent| parent.pid == process.ppid && parent.comm == "postgres");
                    if !parent_is_postgres {
                        figures.postgres += process.children;
                    }
                }
                _ => {}
            }
        }
        figures
    }

    /// What was used between `earlier` and `self`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            this_process: self.this_process - earlier.this_process,
            this_thread: self.this_thread - earlier.this_thread,
            rabbitmq: self.rabbitmq - earlier.rabbitmq,
            postgres: self.postgres - earlier.postgres,
            machine_busy: self.machine_busy - earlier.machine_busy,
            machine_total: self.machine_total - earlier.machine_total,
        }
    }

    /// This process, RabbitMQ and Postgres together.
    pub(crate) fn counted(&self) -> f64 {
        self.this_process + self.rabbitmq + self.postgres
    }

    /// The share of the machine's cores that were busy, 0 to 1.
    pub(crate) fn machine_busy_share(&self) -> f64 {
        if self.machine_total > 0.0 {
            self.machine_busy / self.machine_total
        } else {
            0.0
        }
    }
}

/// A process's line of /proc/<pid>/stat, as far as it is needed here.
struct Stat {
    pid: u32,
    comm: String,
    ppid: u32,
    /// Its user and system time, in seconds.
    own: f64,
    /// Its reaped children's user and system time, in seconds.
    children: f64,
}

fn read_stat(path: &Path) -> Option<Stat> {
    let text = std::fs::read_to_string(path).ok()?;
    // The name is in parentheses and may hold spaces or parentheses itself.
    let (head, rest) = text.split_at(text.rfind(')')?);
    let (pid, comm) = head.split_once(" (")?;
    let fields: Vec<&str> = rest[1..].split_whitespace().collect();
    let ticks = |index: usize| -> Option<f64> {
        fields
            .get(index)?
            .parse::<f64>()
            .ok()
            .map(|ticks| ticks / TICKS_PER_SECOND)
    };
    Some(Stat {
        pid: pid.trim().parse().ok()?,
        comm: comm.to_owned(),
        ppid: fields.get(1)?.parse().ok()?,
        own: ticks(11)? + ticks(12)?,
        children: ticks(13)? + ticks(14)?,
    })
}

/// The machine's busy and total CPU seconds since boot, over every core.
fn machine_times() -> (f64, f64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0.0, 0.0);
    };
    let Some(line) = text.lines().find(|line| line.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal; guest times are inside user and nice.
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    ((total - idle) / TICKS_PER_SECOND, total / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_its_name_reads() {
        let line = "4242 (postgres: a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 7 3 20 0 1 0 100 1000 100";
        let folder = std::env::temp_dir().join(format!("machine-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("stat");
        std::fs::write(&path, line).unwrap();
        let stat = read_stat(&path).unwrap();
        std::fs::remove_dir_all(&folder).unwrap();
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.comm, "postgres: a (b) c");
        assert_eq!(stat.ppid, 1);
        assert!((stat.own - 3.0).abs() < 1e-9, "{}", stat.own);
        assert!((stat.children - 0.1).abs() < 1e-9, "{}", stat.children);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_the_machine_at_least_as_much() {
        // Reading /proc over and over uses CPU: a tick shows up within moments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut figures = CpuSeconds::now();
        while figures.this_process == 0.0 && std::time::Instant::now() < deadline {
            figures = CpuSeconds::now();
        }
        assert!(figures.this_process > 0.0, "{figures:?}");
        assert!(figures.machine_total >= figures.machine_busy, "{figures:?}");
        assert!(
            figures.machine_busy >= figures.this_process / 2.0,
            "the machine's busy time is below this process's: {figures:?}"
        );
    }
}
