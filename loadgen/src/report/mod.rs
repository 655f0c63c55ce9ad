//! What a run tells people: the report's types (`report.json` is
//! [`RunReport`]), the text report, and the report directory with the
//! histogram files. Whether a run passed is decided in [`crate::report::verdict`];
//! the plots are drawn by [`crate::report::plot`].

pub mod merge;
pub mod plot;
pub mod verdict;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::engine::fleet::ConnectSummary;
use crate::engine::phase::PhaseReport;
use crate::measure::histogram::{
    write_hgrm, write_interval_log, Interval, LatencyHistogram, LatencySummary,
};
use crate::profile::Profile;
use crate::run::rounds::{self, RoundPhases, RoundsSummary};
use crate::yardstick::blaster::{self, BlasterReport};

/// Connect-time facts of one fleet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectReport {
    pub clients: usize,
    pub connected: usize,
    pub connect_errors: usize,
    pub login_errors: usize,
    pub error_samples: Vec<String>,
    /// TCP connect time.
    pub connect: LatencySummary,
    /// Connect start → logged in / subscribed.
    pub login: LatencySummary,
    /// Wall time of the whole bring-up.
    pub ramp_secs: f64,
    /// Resident memory of the server node processes before the clients
    /// connected and once they were all connected and idle (KiB).
    #[serde(default)]
    pub server_rss_kib_before: Option<u64>,
    #[serde(default)]
    pub server_rss_kib_after: Option<u64>,
    /// (after - before) / connected: what one idle client costs the server.
    #[serde(default)]
    pub server_kib_per_client: Option<f64>,
    /// Why the three memory figures above are null, when they are (a fleet
    /// that replaced an earlier one, no server pid…); absent before schema 6.
    #[serde(default)]
    pub server_memory_not_measured: Option<String>,
}

impl ConnectReport {
    /// The report of a fleet of `clients` after bring-up; the server memory
    /// figures are filled in by whoever can weigh the server.
    pub fn of(clients: usize, s: &ConnectSummary) -> Self {
        Self {
            clients,
            connected: s.connected,
            connect_errors: s.connect_errors,
            login_errors: s.login_errors,
            error_samples: s.error_samples.clone(),
            connect: LatencySummary::of(&s.connect_hist),
            login: LatencySummary::of(&s.login_hist),
            ramp_secs: s.ramp_secs,
            server_rss_kib_before: None,
            server_rss_kib_after: None,
            server_kib_per_client: None,
            server_memory_not_measured: None,
        }
    }
}

/// rtmc next to the Redis floor at the same load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorComparison {
    pub rtmc_deliveries_per_sec: f64,
    pub floor_deliveries_per_sec: f64,
    pub rtmc_p50_ms: f64,
    pub floor_p50_ms: f64,
    pub rtmc_p99_ms: f64,
    pub floor_p99_ms: f64,
    pub rtmc_p99_9_ms: f64,
    pub floor_p99_9_ms: f64,
    /// rtmc / floor.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub p99_9_ratio: f64,
    pub deliveries_ratio: f64,
    /// design.md §7: rtmc's p99 ≤ 0.5 × the floor's p99.
    pub meets_half_floor_p99: bool,
}

impl FloorComparison {
    pub fn of(rtmc: &PhaseReport, floor: &PhaseReport) -> Self {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Self {
            rtmc_deliveries_per_sec: rtmc.deliveries_per_sec,
            floor_deliveries_per_sec: floor.deliveries_per_sec,
            rtmc_p50_ms: rtmc.latency.p50_ms,
            floor_p50_ms: floor.latency.p50_ms,
            rtmc_p99_ms: rtmc.latency.p99_ms,
            floor_p99_ms: floor.latency.p99_ms,
            rtmc_p99_9_ms: rtmc.latency.p99_9_ms,
            floor_p99_9_ms: floor.latency.p99_9_ms,
            p50_ratio: ratio(rtmc.latency.p50_ms, floor.latency.p50_ms),
            p99_ratio: ratio(rtmc.latency.p99_ms, floor.latency.p99_ms),
            p99_9_ratio: ratio(rtmc.latency.p99_9_ms, floor.latency.p99_9_ms),
            deliveries_ratio: ratio(rtmc.deliveries_per_sec, floor.deliveries_per_sec),
            meets_half_floor_p99: rtmc.latency.p99_ms <= 0.5 * floor.latency.p99_ms,
        }
    }
}

/// One step of a ramp.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RampStep {
    pub rate_per_sec: f64,
    pub phase: PhaseReport,
    pub sustainable: bool,
    /// Why not, when not.
    pub violation: Option<String>,
}

impl RampStep {
    /// Acknowledged messages per second of the step's publishing time (its goodput).
    pub fn acked_per_sec(&self) -> f64 {
        self.phase.acked as f64 / self.phase.duration_secs.max(1e-9)
    }
}

/// The ramp's conclusion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RampReport {
    pub slo_p99_ms: f64,
    pub steps: Vec<RampStep>,
    /// Highest rate that met the SLO with no loss (None: not even the first).
    pub max_sustainable_rate_per_sec: Option<f64>,
    pub max_sustainable_deliveries_per_sec: Option<f64>,
}

/// One fleet's bring-up: which kind, for which round. With fleets kept,
/// each kind connects once (round 1); connected per phase, once per round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetConnect {
    /// The phase kind's label: `rtmc`, `floor`, `nats`, `jetstream`.
    pub label: String,
    /// The round whose phase the fleet was connected for (1-based).
    pub round: usize,
    pub connect: ConnectReport,
}

/// A NATS peer's bring-up and phase, measured like the floor (design.md §7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerReport {
    /// `nats` or `jetstream` (also the phase's label).
    pub label: String,
    /// Where the server ran (`embedded nats-server at …` or the URL given).
    pub server: String,
    pub connect: ConnectReport,
    pub phase: PhaseReport,
}

/// The shape of `report.json`, for readers of old files (the gate reads
/// baselines written by older loadgens). 1: files without the field (before
/// 2026-11-26); 2: `schema_version` and `loadgen_version` added; 3: each
/// phase's `timing` (when it published and drained); 4: interleaved
/// `rounds` with their `rounds_summary`, each phase's `server_cpu`, the
/// blaster `reference`, and `peers` (the NATS core and JetStream phases);
/// 5: the NATS peers are phase kinds of the `rounds` (phases labelled
/// `nats` and `jetstream` in every round, and in `rounds_summary`), the
/// rounds' order rotates, and `peers` holds round 1's phase of each;
/// 6: `connect` and `floor_connect` are each kind's first fleet (round 1's;
/// before 6, with fleets connected per phase, `connect` was the last rtmc
/// fleet's), every fleet's bring-up is in `fleet_connects`, and a connect's
/// `server_memory_not_measured` says why its memory figures are null.
pub const SCHEMA_VERSION: u32 = 6;

fn schema_v1() -> u32 {
    1
}

/// Everything a run reports (`report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// [`SCHEMA_VERSION`] of the loadgen that wrote it (1 when absent).
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// The crate version of the loadgen that wrote it (empty when absent).
    #[serde(default)]
    pub loadgen_version: String,
    /// `run`, `ramp`, `floor` or `merge`.
    pub kind: String,
    pub profile: Profile,
    /// `embedded` or `target`.
    pub target_mode: String,
    pub started_at: String,
    pub run_id: String,
    /// rtmc's first fleet (round 1's; [`Self::fleet_connects`] has them all).
    pub connect: Option<ConnectReport>,
    pub rtmc: Option<PhaseReport>,
    /// The floor's first fleet (round 1's).
    pub floor_connect: Option<ConnectReport>,
    pub floor: Option<PhaseReport>,
    pub comparison: Option<FloorComparison>,
    /// The NATS peers' round-1 phases with their first connect, in the
    /// order listed (absent before schema 4; before 5 they ran once, after
    /// the rounds).
    #[serde(default)]
    pub peers: Vec<PeerReport>,
    pub ramp: Option<RampReport>,
    /// `run`'s rounds, each phase kind's phase in the order they ran (one
    /// round without `--rounds`; `rtmc` and `floor` above are round 1's).
    #[serde(default)]
    pub rounds: Vec<RoundPhases>,
    /// Medians over the rounds with min–max, and rtmc ÷ each peer.
    #[serde(default)]
    pub rounds_summary: Option<RoundsSummary>,
    /// Every fleet's bring-up in the order they connected (schema 6): one
    /// per kind with fleets kept, one per kind and round when connected per
    /// phase.
    #[serde(default)]
    pub fleet_connects: Vec<FleetConnect>,
    /// The raw loopback blaster (`--blaster`): the physical reference for
    /// server CPU per delivery.
    #[serde(default)]
    pub reference: Option<BlasterReport>,
    /// Every reason the run failed; empty = passed.
    pub failures: Vec<String>,
    /// Non-fatal remarks (self-check verdicts, floor loss…).
    pub notes: Vec<String>,
}

impl RunReport {
    /// A report of `kind` with nothing measured yet.
    pub fn new(
        kind: &str,
        profile: Profile,
        target_mode: String,
        started_at: String,
        run_id: String,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
            kind: kind.into(),
            profile,
            target_mode,
            started_at,
            run_id,
            connect: None,
            rtmc: None,
            floor_connect: None,
            floor: None,
            comparison: None,
            peers: Vec::new(),
            ramp: None,
            rounds: Vec::new(),
            rounds_summary: None,
            fleet_connects: Vec::new(),
            reference: None,
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Records a fleet's bring-up for `round` (1-based): the first of rtmc
    /// and of the floor also become `connect` and `floor_connect`, so each
    /// kind's entry is its own first fleet, whichever kind connected last.
    pub fn record_fleet_connect(&mut self, label: &str, round: usize, connect: ConnectReport) {
        let first = match label {
            "rtmc" => Some(&mut self.connect),
            "floor" => Some(&mut self.floor_connect),
            _ => None,
        };
        if let Some(first) = first {
            first.get_or_insert_with(|| connect.clone());
        }
        self.fleet_connects.push(FleetConnect {
            label: label.into(),
            round,
            connect,
        });
    }
}

fn phase_text(out: &mut String, p: &PhaseReport) {
    use std::fmt::Write as _;
    let a = &p.accounting;
    let l = &p.latency;
    let k = &p.ack_latency;
    let _ = writeln!(
        out,
        "== {} — {} receivers × {} msg/s for {} s ==",
        p.label, p.receivers, p.rate_per_sec, p.duration_secs
    );
    let t = &p.timing;
    let _ = writeln!(
        out,
        "publishing {:.1}–{:.1} s after the run start ({} → {}), drained at {:.1} s",
        t.publish_started_secs,
        t.publish_ended_secs,
        t.publish_started_at,
        t.publish_ended_at,
        t.drained_secs
    );
    let _ = writeln!(
        out,
        "published {}  acked {}  publish errors {}  unanswered {}",
        p.published, p.acked, p.publish_errors, p.unanswered
    );
    let _ = writeln!(
        out,
        "deliveries {}  ({:.0}/s over the publish window, peak {:.0}/s in one second)",
        p.deliveries, p.deliveries_per_sec, p.peak_deliveries_per_sec
    );
    let _ = writeln!(
        out,
        "accounting: expected {}  received {}  lost {}  duplicates {}  out-of-order {}  gaps {}  (head {} → {})",
        a.expected, a.received, a.lost, a.duplicates, a.out_of_order, a.gaps, p.head_before, p.head_after
    );
    let _ = writeln!(
        out,
        "witnesses {}: acked but not delivered {}   disconnects {} (slow consumer {})  bad frames {}",
        p.witnesses, p.acked_not_delivered, p.disconnects, p.slow_consumer_disconnects, p.bad_frames
    );
    let _ = writeln!(
        out,
        "publish→receive ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}  (n={})",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p99_9_ms, l.p99_99_ms, l.max_ms, l.count
    );
    let _ = writeln!(
        out,
        "publish→ack ms:     p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
        k.p50_ms, k.p90_ms, k.p99_ms, k.p99_9_ms, k.max_ms, k.count
    );
    let s = &p.selfcheck;
    let _ = writeln!(
        out,
        "self-check: {}  [loadgen {:.2} cores, server {:.2} cores, machine {:.0}% busy, lag p99 {:.2} ms]",
        s.explanation, s.loadgen_cpu_cores, s.server_cpu_cores, s.machine_busy_pct, s.scheduler_lag.p99_ms
    );
    for c in &p.server_cpu {
        match (c.cpu_secs, c.cpu_secs_per_million_deliveries) {
            (Some(secs), Some(per_m)) => {
                let _ = writeln!(
                    out,
                    "server CPU: {} {secs:.2} CPU-s = {per_m:.2} CPU-s per million deliveries",
                    c.what
                );
            }
            (Some(secs), None) => {
                let _ = writeln!(
                    out,
                    "server CPU: {} {secs:.2} CPU-s (no deliveries)",
                    c.what
                );
            }
            _ => {
                let why = c.not_measured.as_deref().unwrap_or("unreadable");
                let _ = writeln!(out, "server CPU: {} not measured ({why})", c.what);
            }
        }
    }
}

fn connect_text(out: &mut String, label: &str, c: &ConnectReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "{label} connect: {}/{} up in {:.1} s  errors connect {} login {}  connect p50 {:.2} ms p99 {:.2} ms  login p50 {:.2} ms p99 {:.2} ms",
        c.connected, c.clients, c.ramp_secs, c.connect_errors, c.login_errors,
        c.connect.p50_ms, c.connect.p99_ms, c.login.p50_ms, c.login.p99_ms
    );
    if let (Some(b), Some(a), Some(per)) = (
        c.server_rss_kib_before,
        c.server_rss_kib_after,
        c.server_kib_per_client,
    ) {
        let _ = writeln!(
            out,
            "{label} server memory: {b} KiB before, {a} KiB with {} idle clients = {per:.1} KiB per client",
            c.connected
        );
    } else if let Some(why) = &c.server_memory_not_measured {
        let _ = writeln!(
            out,
            "{label} server memory per idle client: not measured ({why})"
        );
    }
    if !c.error_samples.is_empty() {
        let _ = writeln!(
            out,
            "  e.g. {}",
            crate::report::verdict::distinct_samples(&c.error_samples)
        );
    }
}

/// The human-readable report.
pub fn render_text(r: &RunReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rtmc loadgen {} — profile {:?}, {} target, run {} at {}",
        r.kind, r.profile.name, r.target_mode, r.run_id, r.started_at
    );
    if r.rounds.len() > 1 {
        // Every round's phases in full (each has its own accounting).
        for (label, c) in [("rtmc", &r.connect), ("floor", &r.floor_connect)] {
            if let Some(c) = c {
                connect_text(&mut out, label, c);
            }
        }
        fleets_text(&mut out, &r.fleet_connects);
        for round in &r.rounds {
            for p in &round.phases {
                let _ = writeln!(out, "-- round {} of {} --", round.round, r.rounds.len());
                phase_text(&mut out, p);
            }
        }
    } else {
        if let Some(c) = &r.connect {
            connect_text(&mut out, "rtmc", c);
        }
        if let Some(p) = &r.rtmc {
            phase_text(&mut out, p);
        }
        if let Some(c) = &r.floor_connect {
            connect_text(&mut out, "floor", c);
        }
        if let Some(p) = &r.floor {
            phase_text(&mut out, p);
        }
    }
    if let Some(c) = &r.comparison {
        comparison_text(&mut out, c);
    }
    if let Some(s) = &r.rounds_summary {
        if r.rounds.len() > 1 {
            rounds::text(&mut out, &r.rounds, s);
        }
    }
    let interleaved = r.rounds.len() > 1;
    for peer in &r.peers {
        connect_text(&mut out, &peer.label, &peer.connect);
        let _ = writeln!(out, "{} server: {}", peer.label, peer.server);
        // With rounds, every round's phases are above.
        if !interleaved {
            phase_text(&mut out, &peer.phase);
        }
    }
    // With rounds, the rounds' summary is the side-by-side table.
    if !r.peers.is_empty() && !interleaved {
        side_by_side_text(&mut out, r);
    }
    if let Some(b) = &r.reference {
        blaster::text(&mut out, b);
    }
    if let Some(ramp) = &r.ramp {
        ramp_text(&mut out, ramp);
    }
    result_text(&mut out, r);
    out
}

/// With fleets connected per phase, each kind's fleets over the rounds:
/// how many, the worst bring-up, the errors in all, and the median with
/// min–max of the connect and login p99 and of the bring-up time (the
/// `connect` line above a kind is its round-1 fleet's).
fn fleets_text(out: &mut String, fleets: &[FleetConnect]) {
    use std::fmt::Write as _;
    let mut labels: Vec<&str> = Vec::new();
    for f in fleets {
        if !labels.contains(&f.label.as_str()) {
            labels.push(&f.label);
        }
    }
    for label in labels {
        let of: Vec<&ConnectReport> = fleets
            .iter()
            .filter(|f| f.label == label)
            .map(|f| &f.connect)
            .collect();
        if of.len() < 2 {
            continue;
        }
        let spread = |read: fn(&ConnectReport) -> f64| {
            let values: Vec<f64> = of.iter().map(|c| read(c)).collect();
            rounds::spread_text(&rtmc_stats::Spread::of(&values), 2)
        };
        let worst = of
            .iter()
            .min_by_key(|c| c.connected)
            .expect("two fleets or more");
        let _ = writeln!(
            out,
            "{label} connect, all {} fleets (one per phase; the line above is round 1's): fewest up {}/{}  errors connect {} login {} in all  connect p99 {} ms  login p99 {} ms  bring-up {} s (median [min–max])",
            of.len(),
            worst.connected,
            worst.clients,
            of.iter().map(|c| c.connect_errors).sum::<usize>(),
            of.iter().map(|c| c.login_errors).sum::<usize>(),
            spread(|c| c.connect.p99_ms),
            spread(|c| c.login.p99_ms),
            spread(|c| c.ramp_secs),
        );
    }
}

fn comparison_text(out: &mut String, c: &FloorComparison) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== rtmc vs Redis pub/sub floor (same load, same run) =="
    );
    let _ = writeln!(
        out,
        "{:<14} {:>14} {:>14} {:>10}",
        "", "rtmc", "floor", "rtmc/floor"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>14.0} {:>14.0} {:>10.2}",
        "deliveries/s", c.rtmc_deliveries_per_sec, c.floor_deliveries_per_sec, c.deliveries_ratio
    );
    for (name, a, b, q) in [
        ("p50 ms", c.rtmc_p50_ms, c.floor_p50_ms, c.p50_ratio),
        ("p99 ms", c.rtmc_p99_ms, c.floor_p99_ms, c.p99_ratio),
        ("p99.9 ms", c.rtmc_p99_9_ms, c.floor_p99_9_ms, c.p99_9_ratio),
    ] {
        let _ = writeln!(out, "{name:<14} {a:>14.2} {b:>14.2} {q:>10.2}");
    }
    let _ = writeln!(
        out,
        "target p99 ≤ 0.5 × floor p99: {}",
        if c.meets_half_floor_p99 {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// rtmc, the floor and each NATS peer in columns (the phases ran one after
/// another at the same load, with the same client engine).
fn side_by_side_text(out: &mut String, r: &RunReport) {
    use std::fmt::Write as _;
    let phases: Vec<&PhaseReport> = r
        .rtmc
        .iter()
        .chain(r.floor.iter())
        .chain(r.peers.iter().map(|p| &p.phase))
        .collect();
    let _ = writeln!(
        out,
        "== side by side (same load, same client engine, one after another) =="
    );
    let _ = write!(out, "{:<16}", "");
    for p in &phases {
        let _ = write!(out, " {:>12}", p.label);
    }
    let _ = writeln!(out);
    type Cell = fn(&PhaseReport) -> f64;
    // (row, decimals, value)
    let rows: [(&str, usize, Cell); 9] = [
        ("deliveries/s", 0, |p| p.deliveries_per_sec),
        ("p50 ms", 2, |p| p.latency.p50_ms),
        ("p99 ms", 2, |p| p.latency.p99_ms),
        ("p99.9 ms", 2, |p| p.latency.p99_9_ms),
        ("max ms", 2, |p| p.latency.max_ms),
        ("ack p50 ms", 2, |p| p.ack_latency.p50_ms),
        ("ack p99 ms", 2, |p| p.ack_latency.p99_ms),
        ("lost", 0, |p| p.accounting.lost as f64),
        ("server cores", 2, |p| p.selfcheck.server_cpu_cores),
    ];
    for (name, decimals, cell) in rows {
        let _ = write!(out, "{name:<16}");
        for p in &phases {
            let _ = write!(out, " {:>12.decimals$}", cell(p));
        }
        let _ = writeln!(out);
    }
    if let Some(rtmc) = &r.rtmc {
        let _ = write!(out, "{:<16}", "rtmc p99 ÷ this");
        for p in &phases {
            let q = if p.latency.p99_ms > 0.0 {
                rtmc.latency.p99_ms / p.latency.p99_ms
            } else {
                f64::NAN
            };
            let _ = write!(out, " {q:>12.2}");
        }
        let _ = writeln!(out);
    }
}

/// `p50/p99/max` of the refusal latency in ms, `-` without refusals.
fn refusal_cell(l: &LatencySummary) -> String {
    if l.count == 0 {
        return "-".into();
    }
    format!("{:.1}/{:.1}/{:.1}", l.p50_ms, l.p99_ms, l.max_ms)
}

fn ramp_text(out: &mut String, ramp: &RampReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== ramp (SLO p99 ≤ {} ms, no loss) ==",
        ramp.slo_p99_ms
    );
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>9} {:>9} {:>11} {:>20} {:>12} {:>10} {:>10} {:>10} {:>8}  verdict",
        "msg/s",
        "acked/s",
        "refused",
        "unansw.",
        "ack p99 ms",
        "refusal p50/p99/max",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "lost"
    );
    for s in &ramp.steps {
        let _ = writeln!(
            out,
            "{:>10.0} {:>10.0} {:>9} {:>9} {:>11.2} {:>20} {:>12.0} {:>10.2} {:>10.2} {:>10.2} {:>8}  {}",
            s.rate_per_sec,
            s.acked_per_sec(),
            s.phase.publish_errors,
            s.phase.unanswered,
            s.phase.ack_latency.p99_ms,
            refusal_cell(&s.phase.refusal_latency),
            s.phase.deliveries_per_sec,
            s.phase.latency.p50_ms,
            s.phase.latency.p99_ms,
            s.phase.latency.p99_9_ms,
            s.phase.accounting.lost,
            s.violation.clone().unwrap_or_else(|| "ok".into())
        );
    }
    match ramp.max_sustainable_rate_per_sec {
        Some(rate) => {
            let _ = writeln!(
                out,
                "highest sustainable rate: {rate:.0} msg/s ({:.0} deliveries/s)",
                ramp.max_sustainable_deliveries_per_sec.unwrap_or(0.0)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "highest sustainable rate: none — even the first step failed"
            );
        }
    }
}

fn result_text(out: &mut String, r: &RunReport) {
    use std::fmt::Write as _;
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    write_result(out, &r.failures);
}

/// `RESULT: PASS`, or `RESULT: FAIL` and each failure (also chaos's report).
pub fn write_result(out: &mut String, failures: &[String]) {
    use std::fmt::Write as _;
    if failures.is_empty() {
        let _ = writeln!(out, "RESULT: PASS");
    } else {
        let _ = writeln!(out, "RESULT: FAIL");
        for f in failures {
            let _ = writeln!(out, "  !!! {f}");
        }
    }
}

/// Histograms that go into the report directory.
pub struct ReportHistograms<'a> {
    pub run_start: SystemTime,
    pub intervals: &'a [Interval],
    /// (file stem, histogram): e.g. ("latency", rtmc), ("floor", …), ("ack", …).
    pub merged: Vec<(&'static str, &'a LatencyHistogram)>,
}

/// Failure writing the report directory.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
}

fn write_file(
    path: &Path,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), String>,
) -> Result<(), ReportError> {
    let err = |message: String| ReportError::Write {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let mut w = std::io::BufWriter::new(file);
    f(&mut w).map_err(err)?;
    w.flush().map_err(|e| err(e.to_string()))
}

/// Writes report.txt, report.json, latency.hlog and the .hgrm files (the
/// caller adds the plots: [`crate::report::plot::write_all`]).
pub fn write_dir(
    dir: &Path,
    r: &RunReport,
    h: &ReportHistograms,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Write {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let mut files = Vec::new();
    let p = dir.join("report.txt");
    write_file(&p, |w| {
        w.write_all(render_text(r).as_bytes())
            .map_err(|e| e.to_string())
    })?;
    files.push(p);
    let p = dir.join("report.json");
    write_file(&p, |w| {
        serde_json::to_writer_pretty(w, r).map_err(|e| e.to_string())
    })?;
    files.push(p);
    if !h.intervals.is_empty() {
        let p = dir.join("latency.hlog");
        write_file(&p, |w| {
            write_interval_log(w, h.run_start, h.intervals).map_err(|e| e.to_string())
        })?;
        files.push(p);
    }
    for (stem, hist) in &h.merged {
        let p = dir.join(format!("{stem}.hgrm"));
        write_file(&p, |w| write_hgrm(w, hist).map_err(|e| e.to_string()))?;
        files.push(p);
    }
    Ok(files)
}

/// `reports/<timestamp>` under the current directory.
pub fn default_dir(kind: &str) -> PathBuf {
    PathBuf::from("reports").join(format!(
        "{}-{kind}",
        chrono::Local::now().format("%Y%m%d-%H%M%S")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(connected: usize, connect_p99_ms: f64, kib_per_client: Option<f64>) -> ConnectReport {
        let mut c = ConnectReport {
            clients: 100,
            connected,
            server_kib_per_client: kib_per_client,
            server_rss_kib_before: kib_per_client.map(|_| 1000),
            server_rss_kib_after: kib_per_client.map(|k| 1000 + (k * connected as f64) as u64),
            ..Default::default()
        };
        c.connect.p99_ms = connect_p99_ms;
        if kib_per_client.is_none() {
            c.server_memory_not_measured = Some("a replacement fleet".into());
        }
        c
    }

    #[test]
    fn each_kind_reports_its_own_first_fleet_and_all_its_fleets() {
        let mut r = RunReport::new(
            "run",
            Profile::default(),
            "embedded".into(),
            "t".into(),
            "1".into(),
        );
        // Per-phase fleets over two rounds, the second in reverse order:
        // rtmc's second fleet and then the floor's connect last.
        r.record_fleet_connect("rtmc", 1, fleet(100, 1.0, Some(12.5)));
        r.record_fleet_connect("floor", 1, fleet(100, 0.5, None));
        r.record_fleet_connect("floor", 2, fleet(100, 0.7, None));
        r.record_fleet_connect("rtmc", 2, fleet(98, 3.0, None));
        let rtmc = r.connect.as_ref().unwrap();
        assert_eq!((rtmc.connected, rtmc.connect.p99_ms), (100, 1.0));
        assert_eq!(rtmc.server_kib_per_client, Some(12.5));
        assert_eq!(r.floor_connect.as_ref().unwrap().connect.p99_ms, 0.5);
        let rounds: Vec<(&str, usize)> = r
            .fleet_connects
            .iter()
            .map(|f| (f.label.as_str(), f.round))
            .collect();
        assert_eq!(
            rounds,
            [("rtmc", 1), ("floor", 1), ("floor", 2), ("rtmc", 2)]
        );
        // The JSON keeps every fleet; the text gives each kind's spread.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        assert!(json["fleet_connects"][3]["connect"]["server_kib_per_client"].is_null());
        r.rounds = vec![
            RoundPhases {
                round: 1,
                phases: vec![],
            },
            RoundPhases {
                round: 2,
                phases: vec![],
            },
        ];
        let text = render_text(&r);
        assert!(text.contains("12.5 KiB per client"), "{text}");
        assert!(!text.contains("0.0 KiB"), "{text}");
        assert!(
            text.contains("rtmc connect, all 2 fleets") && text.contains("fewest up 98/100"),
            "{text}"
        );
        assert!(text.contains("connect p99 2.00 [1.00–3.00] ms"), "{text}");
        assert!(text.contains("floor connect, all 2 fleets"), "{text}");
    }

    #[test]
    fn a_connect_without_memory_figures_says_why() {
        let mut out = String::new();
        connect_text(&mut out, "rtmc", &fleet(100, 1.0, None));
        assert!(
            out.contains("rtmc server memory per idle client: not measured (a replacement fleet)"),
            "{out}"
        );
    }

    #[test]
    fn a_ramp_step_shows_its_refusal_latency_or_a_dash_without_refusals() {
        let mut refused = RampStep {
            rate_per_sec: 2000.0,
            phase: PhaseReport::default(),
            sustainable: false,
            violation: Some("refused".into()),
        };
        refused.phase.refusal_latency = LatencySummary {
            count: 3,
            p50_ms: 1.25,
            p99_ms: 7.5,
            max_ms: 9.0,
            ..Default::default()
        };
        let calm = RampStep {
            rate_per_sec: 1000.0,
            phase: PhaseReport::default(),
            sustainable: true,
            violation: None,
        };
        let mut out = String::new();
        ramp_text(
            &mut out,
            &RampReport {
                slo_p99_ms: 50.0,
                max_sustainable_rate_per_sec: Some(1000.0),
                max_sustainable_deliveries_per_sec: Some(0.0),
                steps: vec![calm, refused],
            },
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("refusal p50/p99/max"), "{out}");
        assert!(lines[2].contains(" - "), "{out}");
        assert!(lines[3].contains("1.2/7.5/9.0"), "{out}");
    }
}
