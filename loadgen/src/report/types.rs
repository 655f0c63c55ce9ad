//! The report's types: what one run measured, as `report.json` holds it
//! ([`RunReport`], its `schema_version` and the fleets', comparisons' and
//! ramp's parts).

use serde::{Deserialize, Serialize};

use crate::engine::fleet::ConnectSummary;
use crate::engine::phase::PhaseReport;
use crate::engine::rooms::summary::RoomsReport;
use crate::measure::histogram::LatencySummary;
use crate::profile::Profile;
use crate::report::rounds::{RoundPhases, RoundsSummary};
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

/// One phase of a room workload's interleaved rounds: a system (`rtmc`,
/// `floor`, `nats`) running the whole workload once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomPhase {
    /// From 1.
    pub round: usize,
    /// The phase kind's label.
    pub system: String,
    /// What the system did with the workload.
    pub rooms: RoomsReport,
}

impl RoomPhase {
    /// The headline server CPU-seconds per million room deliveries.
    pub fn cpu_per_million(&self) -> Option<f64> {
        self.rooms
            .server_cpu
            .first()
            .and_then(|c| c.cpu_secs_per_million_deliveries)
    }
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
    /// A run spread over loadgen agents (`run --agents`): each agent's
    /// clock skew and counts; `rtmc` above is their merge. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentReport>,
    /// A room workload's run (`[workload]` in the profile): its seed, counts,
    /// latency and per-room accounting. Absent for the global room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<RoomsReport>,
    /// A room workload run on rtmc and its peers in interleaved rounds:
    /// every phase in the order it ran (`rooms` above is rtmc's round 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub room_rounds: Vec<RoomPhase>,
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
            agents: Vec::new(),
            rooms: None,
            room_rounds: Vec::new(),
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

/// One blast, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlasterRun {
    pub sockets: usize,
    pub frames_per_write: usize,
    /// Messages sent to every socket (fewer than asked when the time limit hit).
    pub messages: u64,
    /// Bytes of one frame (prefix included) on average.
    pub frame_bytes: f64,
    /// `write` calls the sender made.
    pub writes: u64,
    /// Frames the receivers counted.
    pub deliveries: u64,
    /// From the first write until every receiver had everything.
    pub secs: f64,
    pub deliveries_per_sec: f64,
    /// CPU-seconds of the sending thread alone.
    pub sender_cpu_secs: f64,
    pub cpu_secs_per_million_deliveries: Option<f64>,
}

/// The blasts of one run (`report.json`'s `reference`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlasterReport {
    pub runs: Vec<BlasterRun>,
}

/// One agent's part of a run over several loadgen processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentReport {
    /// The agent's address as given to `--agents`.
    pub agent: String,
    /// Its wall clock minus the coordinator's, ms (midpoint method).
    pub clock_offset_ms: f64,
    /// Round trip of the clock sample the offset came from, ms (the offset
    /// is known to within half of it).
    pub clock_round_trip_ms: f64,
    /// Receiving clients it ran, and how many connected.
    pub clients: usize,
    pub connected: usize,
    /// TCP publishers it ran.
    pub publishers: u32,
    /// Its share of the run's publish rate, messages per second.
    pub rate_per_sec: f64,
    pub published: u64,
    pub acked: u64,
    pub deliveries: u64,
    /// Its receivers' accounting.
    pub accounting: crate::engine::accounting::DeliveryTotals,
    /// Publish→receive latency of its receivers.
    pub latency: LatencySummary,
    /// CPU-seconds the agent process spent from the start to the drain.
    pub cpu_seconds: Option<f64>,
}
