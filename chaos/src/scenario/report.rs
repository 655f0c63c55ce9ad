//! What `chaos run` tells people: the report (`report.json` is
//! [`ChaosReport`]), its text, the recovery time of each fault measured from
//! the recorded history, and the plot of latency and throughput over time
//! with the fault windows shaded.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use rtmc_loadgen::engine::phase::PhaseReport;
use rtmc_loadgen::measure::histogram::Interval;
use rtmc_loadgen::report::plots::{time_panels, Panel, PlotResult, Series, Shade};
use serde::{Deserialize, Serialize};

use crate::checker::Verdict;
use crate::history::{History, Outcome};
use crate::scenario::timeline::FaultWindow;

/// The `schema_version` of `report.json` this code writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a chaos run reports (`report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChaosReport {
    pub schema_version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The seed a random schedule was drawn from.
    pub seed: Option<u64>,
    /// Seconds since the Unix epoch when publishing started.
    pub started_at_unix_secs: u64,
    /// The load phase as loadgen reports it (counts, latency, timing).
    pub load: PhaseReport,
    /// Each fault, its window and how long the system took to recover.
    pub faults: Vec<FaultOutcome>,
    /// The history checker's verdict.
    pub verdict: Verdict,
    /// Every reason the run failed; empty = passed.
    pub failures: Vec<String>,
    /// A room workload's own report (loadgen's room driver), when the
    /// scenario ran one; `load` then sums it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<rtmc_loadgen::engine::rooms::summary::RoomsReport>,
}

impl ChaosReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One fault and the recovery after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultOutcome {
    pub window: FaultWindow,
    /// From the fault's end to the first publish acknowledged after it.
    pub first_ack_after_end_secs: Option<f64>,
    /// From the fault's end until the last client had every message
    /// acknowledged by then (0 when they all had them already).
    pub last_client_caught_up_secs: Option<f64>,
}

/// Recovery times after a fault that ended `end_us` into the recording.
pub fn recovery(history: &History, end_us: u64) -> (Option<f64>, Option<f64>) {
    let mut first_ack: Option<u64> = None;
    let mut owed = HashSet::new();
    for p in history.publishers().iter().flat_map(|p| &p.publishes) {
        if p.outcome != Outcome::Ok {
            continue;
        }
        match p.completed_at_us {
            Some(at) if at >= end_us => {
                first_ack = Some(first_ack.map_or(at, |f| f.min(at)));
            }
            Some(_) => {
                owed.insert(p.message);
            }
            None => {}
        }
    }
    let clients = history.clients().iter();
    let lobby = clients.clone().flat_map(|c| &c.deliveries);
    let rooms = clients.flat_map(|c| &c.room_deliveries);
    let caught_up_ms = lobby
        .map(|d| (d.message, d.received_at_ms))
        .chain(rooms.map(|d| (d.message, d.received_at_ms)))
        .filter(|(m, _)| owed.contains(m))
        .map(|(_, at_ms)| u64::from(at_ms))
        .max();
    let end_ms = end_us / 1000;
    let secs = |us: u64| us as f64 / 1e6;
    (
        first_ack.map(|a| secs(a - end_us)),
        caught_up_ms.map(|m| m.saturating_sub(end_ms) as f64 / 1e3),
    )
}

/// The human-readable report.
pub fn render_text(r: &ChaosReport) -> String {
    let mut out = String::new();
    let p = &r.load;
    let _ = writeln!(
        out,
        "chaos run {:?}{} — {} clients, {} msg/s for {} s",
        r.scenario,
        r.seed.map(|s| format!(" (seed {s})")).unwrap_or_default(),
        p.receivers,
        p.rate_per_sec,
        p.duration_secs
    );
    let _ = writeln!(
        out,
        "published {}  acked {}  refused {}  unanswered {}  deliveries {}  publish→receive p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        p.published, p.acked, p.publish_errors, p.unanswered, p.deliveries,
        p.latency.p50_ms, p.latency.p99_ms, p.latency.max_ms
    );
    let _ = writeln!(out, "faults (seconds since publishing started):");
    for f in &r.faults {
        let w = &f.window;
        let t = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.2} s"));
        let _ = writeln!(
            out,
            "  {}. {}: in effect {} → {}; recovery: first ack after {}, last client caught up after {}{}",
            w.index,
            w.label,
            t(w.started_secs),
            t(w.ended_secs),
            t(f.first_ack_after_end_secs),
            t(f.last_client_caught_up_secs),
            w.error.as_ref().map(|e| format!("  !!! {e}")).unwrap_or_default()
        );
    }
    let _ = write!(out, "{}", r.verdict);
    rtmc_loadgen::report::text::write_result(&mut out, &r.failures);
    out
}

/// Per-second counts of `times_us` (since the recording started), as points
/// at the end of each second since `t0_us`.
fn per_second(name: &str, times_us: impl Iterator<Item = u64>, t0_us: u64, secs: usize) -> Series {
    let mut bins = vec![0u64; secs.max(1)];
    for t in times_us {
        let k = (t.saturating_sub(t0_us) / 1_000_000) as usize;
        if let Some(b) = bins.get_mut(k) {
            *b += 1;
        }
    }
    let pts = bins
        .iter()
        .enumerate()
        .map(|(k, &n)| ((k + 1) as f64, n as f64))
        .collect();
    (name.to_owned(), pts)
}

/// Latency percentiles per second (from loadgen's intervals, timed from
/// the start of publishing) and throughput per second (from the history),
/// with the fault windows shaded.
pub fn plot(
    path: &Path,
    intervals: &[Interval],
    history: &History,
    t0_us: u64,
    windows: &[FaultWindow],
) -> PlotResult {
    let shades: Vec<Shade> = windows
        .iter()
        .map(|w| Shade {
            label: format!("{}. {}", w.index, w.label),
            start_secs: w.started_secs.unwrap_or(w.planned_start_secs),
            end_secs: w.ended_secs.unwrap_or(w.planned_end_secs),
        })
        .collect();
    let panels = [
        Panel {
            title: "publish→receive latency (1 s intervals)".into(),
            y_desc: "latency (ms, log)".into(),
            log_y: true,
            series: latency_series(intervals),
        },
        Panel {
            title: "throughput".into(),
            y_desc: "per second".into(),
            log_y: false,
            series: throughput_series(history, t0_us),
        },
    ];
    time_panels(
        path,
        "chaos run: latency and throughput, fault windows shaded",
        &panels,
        &shades,
    )
}

/// p50, p99 and max publish→receive latency (ms) of each loadgen interval,
/// at the interval's end.
fn latency_series(intervals: &[Interval]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut latency = Vec::new();
    for (q, name) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
        let pts = intervals
            .iter()
            .filter(|i| i.tag == "rtmc" && !i.histogram.is_empty())
            .map(|i| {
                let v = if q >= 1.0 {
                    i.histogram.max()
                } else {
                    i.histogram.value_at_quantile(q)
                };
                ((i.start + i.length).as_secs_f64(), v as f64 / 1000.0)
            })
            .collect();
        latency.push((name.to_owned(), pts));
    }
    latency
}

/// Deliveries, acks, refusals and unanswered publishes per second from
/// `t0_us` to the history's last event.
fn throughput_series(history: &History, t0_us: u64) -> Vec<(String, Vec<(f64, f64)>)> {
    let deliveries_us = || {
        history.clients().iter().flat_map(|c| {
            c.deliveries
                .iter()
                .map(|d| u64::from(d.received_at_ms) * 1000)
        })
    };
    let publishes = || history.publishers().iter().flat_map(|p| &p.publishes);
    let last_us = deliveries_us()
        .chain(publishes().filter_map(|o| o.completed_at_us))
        .max()
        .unwrap_or(t0_us);
    let secs = (last_us.saturating_sub(t0_us) / 1_000_000 + 1) as usize;
    let answered = |want: fn(&Outcome) -> bool| {
        publishes()
            .filter(move |p| want(&p.outcome))
            .filter_map(|p| p.completed_at_us)
    };
    vec![
        per_second("deliveries/s", deliveries_us(), t0_us, secs),
        per_second("acks/s", answered(|o| *o == Outcome::Ok), t0_us, secs),
        per_second(
            "refused/s",
            answered(|o| matches!(o, Outcome::Fail { .. })),
            t0_us,
            secs,
        ),
        per_second(
            "unanswered/s",
            answered(|o| *o == Outcome::Unknown),
            t0_us,
            secs,
        ),
    ]
}
