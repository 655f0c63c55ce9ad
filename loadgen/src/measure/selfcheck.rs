//! Loadgen watching itself: its own CPU time, the server processes' CPU
//! time, the machine's busy share, and how late its scheduler wakes a task —
//! so a run where loadgen, not the server, was the bottleneck says so.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::measure::cpu::{process_cpu_ticks, CLOCK_TICKS_PER_SEC};
use crate::measure::histogram::{new_histogram, record_us, LatencyHistogram, LatencySummary};

/// The lag probe's period.
const LAG_PERIOD_MS: u64 = 10;

/// CPU counters at one instant.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    /// utime+stime of this process, in clock ticks.
    self_ticks: u64,
    /// utime+stime of each watched server process, in clock ticks.
    server_ticks: u64,
    /// Machine-wide busy and total jiffies from /proc/stat.
    machine_busy: u64,
    machine_total: u64,
}

/// Reads the CPU counters of this process, of `server_pids`, and of the machine.
pub fn sample_cpu(server_pids: &[u32]) -> CpuSample {
    let (machine_busy, machine_total) = machine_jiffies().unwrap_or((0, 0));
    CpuSample {
        at: Instant::now(),
        self_ticks: process_cpu_ticks("self").unwrap_or(0),
        server_ticks: server_pids
            .iter()
            .filter_map(|p| process_cpu_ticks(&p.to_string()))
            .sum(),
        machine_busy,
        machine_total,
    }
}

fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Samples every 10 ms how late a sleeping task wakes up.
pub struct LagProbe {
    lag: Arc<Mutex<LatencyHistogram>>,
    task: JoinHandle<()>,
}

impl LagProbe {
    pub fn start() -> Self {
        let lag = Arc::new(Mutex::new(new_histogram()));
        let l = lag.clone();
        let task = tokio::spawn(async move {
            let period = Duration::from_millis(LAG_PERIOD_MS);
            loop {
                let before = Instant::now();
                tokio::time::sleep(period).await;
                let late = before.elapsed().saturating_sub(period);
                if let Ok(mut h) = l.lock() {
                    record_us(&mut h, late.as_micros() as u64);
                }
            }
        });
        Self { lag, task }
    }

    /// The lag recorded since the last call.
    pub fn take(&self) -> LatencyHistogram {
        match self.lag.lock() {
            Ok(mut h) => {
                let out = h.clone();
                h.reset();
                out
            }
            Err(_) => new_histogram(),
        }
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the measurement reflects the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Loadgen had headroom: the figures are the server's.
    #[default]
    Ok,
    /// Loadgen itself was saturated or late: the figures understate the server.
    LoadgenBound,
    /// The cores were all busy (loadgen and server share them): the figures
    /// are a property of this machine as a whole.
    MachineSaturated,
}

/// Loadgen's report on itself for one phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Cores loadgen could use.
    pub available_cores: usize,
    /// Loadgen's CPU use, in cores (1.0 = one core fully busy).
    pub loadgen_cpu_cores: f64,
    /// The watched server processes' CPU use, in cores.
    pub server_cpu_cores: f64,
    /// Share of the machine's CPU time that was busy, in percent.
    pub machine_busy_pct: f64,
    /// How late a 10 ms timer fired.
    pub scheduler_lag: LatencySummary,
    pub verdict: Verdict,
    /// One sentence saying why.
    pub explanation: String,
}

impl SelfCheck {
    /// Judges a phase from CPU samples at its ends, the lag it saw, and the
    /// p99 latency it measured.
    pub fn judge(
        start: &CpuSample,
        end: &CpuSample,
        lag: &LatencyHistogram,
        latency_p99_ms: f64,
    ) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-3);
        let loadgen =
            (end.self_ticks.saturating_sub(start.self_ticks)) as f64 / CLOCK_TICKS_PER_SEC / wall;
        let server = (end.server_ticks.saturating_sub(start.server_ticks)) as f64
            / CLOCK_TICKS_PER_SEC
            / wall;
        let total = end.machine_total.saturating_sub(start.machine_total);
        let busy_pct = if total == 0 {
            0.0
        } else {
            100.0 * end.machine_busy.saturating_sub(start.machine_busy) as f64 / total as f64
        };
        let lag_summary = LatencySummary::of(lag);
        let loadgen_pct = 100.0 * loadgen / cores as f64;
        let lag_heavy = lag_summary.p99_ms > 1.0 && lag_summary.p99_ms >= 0.5 * latency_p99_ms;
        let (verdict, explanation) = if loadgen_pct >= 90.0 || lag_heavy {
            (
                Verdict::LoadgenBound,
                format!(
                    "LOADGEN-BOUND: loadgen used {loadgen:.2} of {cores} cores ({loadgen_pct:.0}%) and its timers fired up to {:.1} ms late at p99 (measured latency p99 {latency_p99_ms:.1} ms); the figures understate the server",
                    lag_summary.p99_ms
                ),
            )
        } else if busy_pct >= 95.0 {
            (
                Verdict::MachineSaturated,
                format!(
                    "MACHINE-SATURATED: all {cores} cores were {busy_pct:.0}% busy (loadgen {loadgen:.2} cores, server {server:.2} cores); loadgen had headroom but shared the cores with the server"
                ),
            )
        } else {
            (
                Verdict::Ok,
                format!(
                    "ok: loadgen used {loadgen:.2} of {cores} cores ({loadgen_pct:.0}%), scheduler lag p99 {:.2} ms vs latency p99 {latency_p99_ms:.1} ms; the figures are the server's",
                    lag_summary.p99_ms
                ),
            )
        };
        SelfCheck {
            available_cores: cores,
            loadgen_cpu_cores: loadgen,
            server_cpu_cores: server,
            machine_busy_pct: busy_pct,
            scheduler_lag: lag_summary,
            verdict,
            explanation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu() {
        let a = sample_cpu(&[std::process::id()]);
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = sample_cpu(&[std::process::id()]);
        assert!(b.self_ticks >= a.self_ticks);
        assert!(b.machine_total > a.machine_total);
        let check = SelfCheck::judge(&a, &b, &new_histogram(), 10.0);
        assert!(check.loadgen_cpu_cores > 0.0, "{check:?}");
    }

    #[test]
    fn a_late_scheduler_is_flagged() {
        let a = sample_cpu(&[]);
        let mut b = a.clone();
        b.at = a.at + Duration::from_secs(1);
        let mut lag = new_histogram();
        for _ in 0..100 {
            record_us(&mut lag, 20_000);
        }
        let check = SelfCheck::judge(&a, &b, &lag, 25.0);
        assert_eq!(check.verdict, Verdict::LoadgenBound);
        let check = SelfCheck::judge(&a, &b, &new_histogram(), 25.0);
        assert_eq!(check.verdict, Verdict::Ok);
    }
}
