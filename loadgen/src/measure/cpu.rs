//! Server CPU accounting: how many CPU-seconds (user + system, from
//! `/proc/<pid>/stat`) the server processes of a phase spent, and what that
//! is per million deliveries — the efficiency figure rtmc is compared on
//! with its peers (design.md §7: "server CPU per delivery ≤ the best
//! peer's"). The processes are rtmc's nodes (loadgen's children in the
//! embedded stack, `--server-pid` otherwise), the floor's Redis (its
//! container's host pid, [`container_pid`]) and any other peer's server
//! process. Also this thread's own CPU time, for the blaster.

use std::process::Command;

use serde::{Deserialize, Serialize};

/// Linux reports process CPU time in clock ticks of this length.
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of `pid` (a number, `self` or `thread-self`), in clock
/// ticks; `None` when the process is gone or unreadable.
pub fn process_cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU-seconds `pid` has used so far (all its threads).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    process_cpu_ticks(&pid.to_string()).map(|t| t as f64 / CLOCK_TICKS_PER_SEC)
}

/// CPU-seconds the calling OS thread has used so far: nanoseconds from
/// `/proc/thread-self/schedstat` where the kernel keeps them, else clock
/// ticks from its `stat`.
pub fn thread_cpu_secs() -> Option<f64> {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat") {
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return Some(ns as f64 / 1e9);
        }
    }
    process_cpu_ticks("thread-self").map(|t| t as f64 / CLOCK_TICKS_PER_SEC)
}

/// Failure finding a server process.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("docker inspect {container}: {message}")]
    Inspect { container: String, message: String },
}

/// The host pid of a running container's main process (`docker inspect -f
/// {{.State.Pid}}`): Redis in the embedded stack; a containerised
/// nats-server likewise. A server run as loadgen's child has its pid from
/// `Child::id()`; either goes into a [`CpuWatch`].
pub fn container_pid(container: &str) -> Result<u32, CpuError> {
    let err = |message: String| CpuError::Inspect {
        container: container.into(),
        message,
    };
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", container])
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(err(format!(
            "no running process (State.Pid = {:?})",
            text.trim()
        ))),
    }
}

/// Server processes whose CPU a phase reports under one name.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuWatch {
    /// e.g. `rtmc server nodes`, `redis-server`.
    pub what: String,
    pub pids: Vec<u32>,
    /// Why nothing is measured (no pid known), when `pids` is empty.
    pub not_measured: Option<String>,
}

impl CpuWatch {
    pub fn of(what: &str, pids: Vec<u32>) -> Self {
        Self {
            what: what.into(),
            pids,
            not_measured: None,
        }
    }

    /// A watch that says why it measures nothing (e.g. "give --server-pid").
    pub fn not_measured(what: &str, why: &str) -> Self {
        Self {
            what: what.into(),
            pids: Vec::new(),
            not_measured: Some(why.into()),
        }
    }

    /// Summed CPU ticks of the pids now; `None` if any is unreadable or
    /// there is none.
    fn ticks(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids
            .iter()
            .map(|p| process_cpu_ticks(&p.to_string()))
            .sum()
    }
}

/// The watches' counters at one instant.
#[derive(Debug, Clone)]
pub struct CpuReading(Vec<Option<u64>>);

/// Reads every watch's counters.
pub fn read(watches: &[CpuWatch]) -> CpuReading {
    CpuReading(watches.iter().map(CpuWatch::ticks).collect())
}

/// What one server (group of processes) spent in a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerCpu {
    pub what: String,
    pub pids: Vec<u32>,
    /// user + system CPU-seconds from the start of publishing until the
    /// receivers drained; `None` when not measured.
    pub cpu_secs: Option<f64>,
    /// `cpu_secs` per 1,000,000 deliveries counted by the receivers.
    pub cpu_secs_per_million_deliveries: Option<f64>,
    /// Why there is no figure, when there is none.
    #[serde(default)]
    pub not_measured: Option<String>,
}

/// Each watch's CPU between `start` and `end`, and per million `deliveries`.
pub fn spent(
    watches: &[CpuWatch],
    start: &CpuReading,
    end: &CpuReading,
    deliveries: u64,
) -> Vec<ServerCpu> {
    watches
        .iter()
        .zip(start.0.iter().zip(&end.0))
        .map(|(w, (a, b))| {
            let cpu_secs = match (a, b) {
                (Some(a), Some(b)) => Some(b.saturating_sub(*a) as f64 / CLOCK_TICKS_PER_SEC),
                _ => None,
            };
            let not_measured = match (&w.not_measured, cpu_secs) {
                (Some(why), _) => Some(why.clone()),
                (None, None) => Some("a process could not be read (exited?)".into()),
                (None, Some(_)) => None,
            };
            ServerCpu {
                what: w.what.clone(),
                pids: w.pids.clone(),
                cpu_secs,
                cpu_secs_per_million_deliveries: cpu_secs.and_then(|s| per_million(s, deliveries)),
                not_measured,
            }
        })
        .collect()
}

/// `cpu_secs` per 1,000,000 `deliveries`; `None` without deliveries.
pub fn per_million(cpu_secs: f64, deliveries: u64) -> Option<f64> {
    (deliveries > 0).then(|| cpu_secs * 1e6 / deliveries as f64)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Busy-loops until `cpu` (a CPU clock) has advanced by `secs`, or 10 s
    /// of wall time passed on a very busy machine.
    fn burn(cpu: impl Fn() -> f64, secs: f64) {
        let start = cpu();
        let t = Instant::now();
        let mut x = 0u64;
        while cpu() - start < secs && t.elapsed() < Duration::from_secs(10) {
            for _ in 0..10_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
        }
        std::hint::black_box(x);
    }

    #[test]
    fn the_own_process_is_measured_while_it_burns_cpu() {
        let me = vec![std::process::id()];
        let watches = [
            CpuWatch::of("this test", me),
            CpuWatch::not_measured("a remote server", "give --server-pid"),
        ];
        let start = read(&watches);
        let own_cpu = || process_cpu_secs(std::process::id()).unwrap_or(f64::MAX);
        burn(own_cpu, 0.2);
        let end = read(&watches);
        let spent = spent(&watches, &start, &end, 2_000_000);
        let own = spent[0].cpu_secs.expect("own process readable");
        // Both readings come from the same counters, so the phase sees what
        // the loop burnt (to the 10 ms tick).
        assert!(own >= 0.19, "{spent:?}");
        assert_eq!(spent[0].cpu_secs_per_million_deliveries, Some(own / 2.0));
        assert_eq!(spent[0].not_measured, None);
        assert_eq!(spent[1].cpu_secs, None);
        assert_eq!(spent[1].not_measured.as_deref(), Some("give --server-pid"));
    }

    #[test]
    fn a_vanished_process_is_not_measured_and_says_so() {
        let watches = [CpuWatch::of("gone", vec![u32::MAX - 1])];
        let r = read(&watches);
        let s = spent(&watches, &r, &r, 10);
        assert_eq!(s[0].cpu_secs, None);
        assert!(s[0].not_measured.is_some());
    }

    #[test]
    fn this_threads_cpu_time_rises_with_its_work() {
        let before = thread_cpu_secs().expect("thread CPU readable");
        let process_before = process_cpu_secs(std::process::id()).unwrap_or(0.0);
        burn(|| thread_cpu_secs().unwrap_or(f64::MAX), 0.1);
        let after = thread_cpu_secs().expect("thread CPU readable");
        let process_after = process_cpu_secs(std::process::id()).unwrap_or(0.0);
        assert!(after - before >= 0.1, "{before} → {after}");
        // The thread's time is part of its process's.
        assert!(
            process_after - process_before >= 0.09,
            "{process_before} → {process_after}"
        );
    }

    #[test]
    fn per_million_needs_deliveries() {
        assert_eq!(per_million(3.0, 1_500_000), Some(2.0));
        assert_eq!(per_million(3.0, 0), None);
    }

    #[test]
    fn a_missing_container_is_an_error_naming_it() {
        let err = container_pid("rtmc-no-such-container-for-cpu-test").unwrap_err();
        assert!(err.to_string().contains("rtmc-no-such-container"), "{err}");
    }
}
