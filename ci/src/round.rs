//! One round: a loadgen report directory read through the narrow view the
//! gate needs (`report.json`'s rtmc and floor phases), plus `round.json`, the
//! gate's note of which side ran it and when in the schedule.
//!
//! `report.json` is loadgen's published file format (its `RunReport`). The
//! gate reads only the fields it judges, with serde ignoring the rest, so a
//! loadgen refactor that adds fields or moves types does not break the gate;
//! a contract test parses the same fixture with loadgen's own type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metric::Metric;

/// Which binary a round ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// A: the pinned baseline commit's `rtmc`.
    Baseline,
    /// B: the candidate's `rtmc`.
    Candidate,
}

impl Side {
    /// `A` or `B`, as the schedule prints it.
    pub fn letter(self) -> char {
        match self {
            Side::Baseline => 'A',
            Side::Candidate => 'B',
        }
    }

    /// The directory name under a gate run's `rounds/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Candidate => "candidate",
        }
    }
}

/// The percentiles of one latency summary the gate judges (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PercentilesView {
    /// Samples behind the summary.
    #[serde(default)]
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
}

/// One measured phase of a loadgen run (rtmc, or the Redis floor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseView {
    #[serde(default)]
    pub label: String,
    pub deliveries_per_sec: f64,
    /// publish→receive.
    pub latency: PercentilesView,
    /// publish→ack.
    pub ack_latency: PercentilesView,
    /// The server processes' CPU over the phase (schema ≥ 4); the first
    /// entry is the server under test.
    #[serde(default)]
    pub server_cpu: Vec<ServerCpuView>,
}

/// One entry of a phase's `server_cpu`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCpuView {
    #[serde(default)]
    pub what: String,
    #[serde(default)]
    pub cpu_secs_per_million_deliveries: Option<f64>,
}

/// The part of a fleet's connect report the gate reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectView {
    /// (RSS after − before the bring-up) / connected clients, KiB.
    #[serde(default)]
    pub server_kib_per_client: Option<f64>,
}

impl PhaseView {
    /// The value of `metric` in this phase.
    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::RecvP50 => self.latency.p50_ms,
            Metric::RecvP99 => self.latency.p99_ms,
            Metric::RecvP99_9 => self.latency.p99_9_ms,
            Metric::AckP50 => self.ack_latency.p50_ms,
            Metric::AckP99 => self.ack_latency.p99_ms,
            Metric::AckP99_9 => self.ack_latency.p99_9_ms,
            Metric::DeliveriesPerSec => self.deliveries_per_sec,
            Metric::ServerCpuSecsPerMillion => self
                .server_cpu
                .first()
                .and_then(|c| c.cpu_secs_per_million_deliveries)
                .unwrap_or(f64::NAN),
            // Memory is weighed per fleet, not per phase: see `Round::value`.
            Metric::ServerKibPerIdleClient => f64::NAN,
        }
    }
}

/// The newest `report.json` shape (`schema_version`) the gate knows; it reads
/// every older one (1 = files from before the field existed). The fields it
/// reads have not changed since 1: schema 4 added loadgen's interleaved
/// `rounds` (the gate runs one round per loadgen process, whose `rtmc` and
/// `floor` are that round's; with `--rounds N` they are round 1's) and the
/// NATS peers, which it ignores; schema 5 made the peers phase kinds of
/// those rounds (more phases per round, `rtmc` and `floor` unchanged);
/// schema 6 changed only the connect entries (`connect` is rtmc's first
/// fleet, `fleet_connects` lists them all), which the gate does not read.
pub const MAX_SCHEMA_VERSION: u32 = 6;

fn schema_v1() -> u32 {
    1
}

/// The part of loadgen's `report.json` the gate reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// loadgen's `SCHEMA_VERSION` (1 when absent: an older loadgen).
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// The loadgen that measured the round (empty before schema 2).
    #[serde(default)]
    pub loadgen_version: String,
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub started_at: String,
    /// The rtmc phase (absent only when loadgen ran the floor alone).
    pub rtmc: Option<PhaseView>,
    /// The Redis pub/sub floor of the same run: the control workload.
    pub floor: Option<PhaseView>,
    /// rtmc's first fleet bring-up (memory per idle client).
    #[serde(default)]
    pub connect: Option<ConnectView>,
    /// Why loadgen failed the run (loss, errors…); empty = passed.
    #[serde(default)]
    pub failures: Vec<String>,
}

/// The gate's own note in each round directory (`round.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundMeta {
    pub side: Side,
    /// Index of the A/B pair (0-based).
    pub pair: usize,
    /// Position in the run order (0-based): A B B A A B …
    pub order: usize,
    /// The `rtmc` binary the round ran (`RTMC_BIN`).
    pub rtmc_bin: PathBuf,
    /// `RTMC_TEST_BROADCAST_DELAY_US` given to the round, if any.
    pub inject_delay_us: Option<u64>,
    /// `RTMC_TEST_FANOUT_CPU_PCT` given to the round, if any.
    #[serde(default)]
    pub inject_cpu_pct: Option<u64>,
    /// loadgen's exit code (0 passed, 1 measured a failure, 2 could not run).
    pub loadgen_exit_code: Option<i32>,
    /// Wall time of the round.
    pub wall_secs: f64,
}

/// A round ready to be compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub side: Side,
    pub pair: usize,
    pub order: usize,
    pub dir: PathBuf,
    pub rtmc: PhaseView,
    /// None when the run had no floor phase (then there is no control).
    pub floor: Option<PhaseView>,
    /// rtmc's server memory per idle client (KiB), when loadgen weighed it.
    pub kib_per_idle_client: Option<f64>,
    pub failures: Vec<String>,
}

impl Round {
    /// The rtmc phase's value of `metric`.
    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::ServerKibPerIdleClient => self.kib_per_idle_client.unwrap_or(f64::NAN),
            _ => self.rtmc.value(metric),
        }
    }

    /// Whether the round holds a usable value of `metric` (a positive
    /// number; an optional metric may be missing).
    pub fn has(&self, metric: Metric) -> bool {
        let v = self.value(metric);
        v.is_finite() && v > 0.0
    }

    /// The floor phase's value of `metric` (the control); none for memory,
    /// which loadgen weighs for rtmc only, or when the floor lacks it.
    pub fn control(&self, metric: Metric) -> Option<f64> {
        if metric == Metric::ServerKibPerIdleClient {
            return None;
        }
        self.floor
            .as_ref()
            .map(|f| f.value(metric))
            .filter(|v| v.is_finite() && *v > 0.0)
    }

    /// rtmc ÷ floor of the same round: the control-corrected value.
    pub fn corrected(&self, metric: Metric) -> Option<f64> {
        self.control(metric).map(|c| self.value(metric) / c)
    }
}

/// One round as reported (in `gate.json`, the plots and the spectra): the
/// judged values by metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    pub side: Side,
    pub pair: usize,
    pub order: usize,
    pub dir: PathBuf,
    /// rtmc's value per metric key.
    pub rtmc: BTreeMap<Metric, f64>,
    /// The floor's value per metric key (the control), if it ran.
    pub floor: Option<BTreeMap<Metric, f64>>,
    pub failures: Vec<String>,
}

impl RoundSummary {
    pub fn of(r: &Round) -> Self {
        Self {
            side: r.side,
            pair: r.pair,
            order: r.order,
            dir: r.dir.clone(),
            // A metric the round lacks (NaN) is left out: JSON has no NaN.
            rtmc: Metric::ALL
                .iter()
                .map(|m| (*m, r.value(*m)))
                .filter(|(_, v)| v.is_finite())
                .collect(),
            floor: r.floor.as_ref().map(|_| {
                Metric::ALL
                    .iter()
                    .filter_map(|m| Some((*m, r.control(*m)?)))
                    .collect()
            }),
            failures: r.failures.clone(),
        }
    }

    /// rtmc's value of `m`, NaN when the round lacks it.
    pub fn value(&self, m: Metric) -> f64 {
        lookup(&self.rtmc, m)
    }

    /// The floor's value of `m`, if any.
    pub fn control(&self, m: Metric) -> Option<f64> {
        self.floor.as_ref().and_then(|f| f.get(&m).copied())
    }
}

/// The value of `m` in `values`, NaN when absent.
pub fn lookup(values: &BTreeMap<Metric, f64>, m: Metric) -> f64 {
    values.get(&m).copied().unwrap_or(f64::NAN)
}

/// A round directory that cannot be judged.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a loadgen report: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has report.json schema {found}, newer than the {MAX_SCHEMA_VERSION} this gate knows: rebuild the gate")]
    NewerSchema { path: PathBuf, found: u32 },
    #[error("{path} has no rtmc phase (a `loadgen floor` run?)")]
    NoRtmcPhase { path: PathBuf },
    #[error("{path}: {metric} is {value}, not a positive number (empty phase?)")]
    BadValue {
        path: PathBuf,
        metric: Metric,
        value: f64,
    },
}

/// Reads `dir/report.json`.
pub fn read_report(dir: &Path) -> Result<RoundReport, RoundError> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|source| RoundError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| RoundError::Parse {
        path,
        message: e.to_string(),
    })
}

/// Reads `dir/round.json` when the gate wrote one.
pub fn read_meta(dir: &Path) -> Result<Option<RoundMeta>, RoundError> {
    let path = dir.join("round.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RoundError::Read { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| RoundError::Parse {
            path,
            message: e.to_string(),
        })
}

/// Reads a round directory as `side`'s round number `pair`, run at `order`,
/// and checks every judged value is a positive number.
pub fn load_round(dir: &Path, side: Side, pair: usize, order: usize) -> Result<Round, RoundError> {
    let report = read_report(dir)?;
    if report.schema_version > MAX_SCHEMA_VERSION {
        return Err(RoundError::NewerSchema {
            path: dir.to_owned(),
            found: report.schema_version,
        });
    }
    let rtmc = report.rtmc.ok_or_else(|| RoundError::NoRtmcPhase {
        path: dir.to_owned(),
    })?;
    let round = Round {
        side,
        pair,
        order,
        dir: dir.to_owned(),
        rtmc,
        floor: report.floor,
        kib_per_idle_client: report.connect.and_then(|c| c.server_kib_per_client),
        failures: report.failures,
    };
    for metric in Metric::ALL.into_iter().filter(|m| !m.optional()) {
        let mut values = vec![round.value(metric)];
        values.extend(round.control(metric));
        if let Some(&value) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
            return Err(RoundError::BadValue {
                path: dir.to_owned(),
                metric,
                value,
            });
        }
    }
    Ok(round)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(p50_ms: f64, deliveries_per_sec: f64) -> PhaseView {
        PhaseView {
            label: "rtmc".into(),
            deliveries_per_sec,
            latency: PercentilesView {
                count: 10,
                p50_ms,
                p99_ms: 2.0 * p50_ms,
                p99_9_ms: 3.0 * p50_ms,
            },
            ack_latency: PercentilesView {
                count: 10,
                p50_ms,
                p99_ms: 2.0 * p50_ms,
                p99_9_ms: 3.0 * p50_ms,
            },
            server_cpu: vec![],
        }
    }

    #[test]
    fn corrected_is_rtmc_over_floor() {
        let r = Round {
            side: Side::Baseline,
            pair: 0,
            order: 0,
            dir: PathBuf::new(),
            rtmc: phase(10.0, 1000.0),
            floor: Some(phase(5.0, 2000.0)),
            kib_per_idle_client: None,
            failures: vec![],
        };
        assert_eq!(r.corrected(Metric::RecvP99), Some(2.0));
        assert_eq!(r.corrected(Metric::DeliveriesPerSec), Some(0.5));
        let no_floor = Round { floor: None, ..r };
        assert_eq!(no_floor.corrected(Metric::RecvP50), None);
    }

    #[test]
    fn old_and_new_report_shapes_are_read_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let rtmc = serde_json::to_value(phase(5.0, 1000.0)).unwrap();
        let old = serde_json::json!({"kind": "run", "rtmc": rtmc, "failures": []});
        std::fs::write(&path, old.to_string()).unwrap();
        assert_eq!(read_report(dir.path()).unwrap().schema_version, 1);
        load_round(dir.path(), Side::Baseline, 0, 0).unwrap();
        let mut new = old.clone();
        new["schema_version"] = 2.into();
        new["loadgen_version"] = "0.1.0".into();
        std::fs::write(&path, new.to_string()).unwrap();
        let r = read_report(dir.path()).unwrap();
        assert_eq!((r.schema_version, r.loadgen_version.as_str()), (2, "0.1.0"));
        load_round(dir.path(), Side::Baseline, 0, 0).unwrap();
        // 4 (peers once, after the rounds) and 5 (peers inside the rounds)
        // read the same: the gate takes `rtmc` and `floor`.
        for (v, peers_in_rounds) in [(4, false), (5, true)] {
            let mut phases = vec![rtmc.clone()];
            if peers_in_rounds {
                for label in ["nats", "jetstream"] {
                    let mut p = rtmc.clone();
                    p["label"] = label.into();
                    phases.push(p);
                }
            }
            new["schema_version"] = v.into();
            new["rounds"] = serde_json::json!([{"round": 1, "phases": phases}]);
            std::fs::write(&path, new.to_string()).unwrap();
            assert_eq!(read_report(dir.path()).unwrap().schema_version, v);
            load_round(dir.path(), Side::Baseline, 0, 0).unwrap();
        }
        // 6: each fleet's connect in `fleet_connects`; `rtmc` and `floor`
        // as before.
        new["schema_version"] = 6.into();
        new["fleet_connects"] = serde_json::json!([{"label": "rtmc", "round": 1, "connect": {}}]);
        std::fs::write(&path, new.to_string()).unwrap();
        assert_eq!(read_report(dir.path()).unwrap().schema_version, 6);
        load_round(dir.path(), Side::Baseline, 0, 0).unwrap();
        new["schema_version"] = (MAX_SCHEMA_VERSION + 1).into();
        std::fs::write(&path, new.to_string()).unwrap();
        let err = load_round(dir.path(), Side::Baseline, 0, 0).unwrap_err();
        assert!(matches!(err, RoundError::NewerSchema { .. }), "{err}");
    }

    #[test]
    fn an_empty_phase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let report = RoundReport {
            rtmc: Some(phase(0.0, 1000.0)),
            ..Default::default()
        };
        std::fs::write(
            dir.path().join("report.json"),
            serde_json::to_string(&report).unwrap(),
        )
        .unwrap();
        let err = load_round(dir.path(), Side::Candidate, 0, 1).unwrap_err();
        assert!(matches!(err, RoundError::BadValue { .. }), "{err}");
    }
}
