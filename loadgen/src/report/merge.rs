//! `loadgen merge`: several loadgen processes (on one host or several) each
//! wrote a report directory; this combines their interval logs into one
//! histogram per measurement and their accounting into one report.
//!
//! Reports of `run --rounds N` are not summed but pooled: the processes ran
//! one after another, so their rounds are rounds of one longer run — every
//! round of every input in input order, the medians and min–max recomputed
//! over all of them ([`pool_rounds`]). Inputs of different profiles or
//! phase kinds cannot be pooled and are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::phase::PhaseReport;
use crate::measure::histogram::{
    merge_into, new_histogram, read_interval_log, HistogramFileError, Interval, LatencyHistogram,
    LatencySummary,
};
use crate::report::rounds::RoundsSummary;
use crate::report::types::{FloorComparison, PeerReport, RunReport};

/// Failure reading an input directory.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Histogram {
        path: PathBuf,
        source: HistogramFileError,
    },
    #[error("{path}: report.json: {message}")]
    Report { path: PathBuf, message: String },
    #[error("nothing to merge")]
    Empty,
    #[error("{path}: cannot pool its rounds with {first}'s: {message}")]
    Incompatible {
        path: PathBuf,
        first: PathBuf,
        message: String,
    },
}

/// The merged result.
pub struct Merged {
    pub report: RunReport,
    /// Intervals summed per (tag, second since each run's start).
    pub intervals: Vec<Interval>,
    /// Merged whole-run histogram per tag.
    pub by_tag: BTreeMap<String, LatencyHistogram>,
}

/// Sums the intervals of several logs: same tag and same whole second since
/// each run's own start are added together.
pub fn merge_intervals(
    logs: &[Vec<Interval>],
) -> (Vec<Interval>, BTreeMap<String, LatencyHistogram>) {
    let mut slots: BTreeMap<(String, u64), Interval> = BTreeMap::new();
    let mut by_tag: BTreeMap<String, LatencyHistogram> = BTreeMap::new();
    for log in logs {
        for i in log {
            let key = (i.tag.clone(), i.start.as_secs());
            let slot = slots.entry(key).or_insert_with(|| Interval {
                start: Duration::from_secs(i.start.as_secs()),
                length: i.length,
                tag: i.tag.clone(),
                histogram: new_histogram(),
            });
            slot.length = slot.length.max(i.length);
            merge_into(&mut slot.histogram, &i.histogram);
            merge_into(
                by_tag.entry(i.tag.clone()).or_insert_with(new_histogram),
                &i.histogram,
            );
        }
    }
    let mut intervals: Vec<Interval> = slots.into_values().collect();
    intervals.sort_by_key(|i| i.start);
    (intervals, by_tag)
}

/// Sums phase reports of several processes; latency summaries come from the
/// merged histograms.
pub fn merge_phases(
    phases: &[PhaseReport],
    latency: Option<&LatencyHistogram>,
    ack: Option<&LatencyHistogram>,
) -> Option<PhaseReport> {
    let mut it = phases.iter();
    let mut m = it.next()?.clone();
    for p in it {
        m.receivers += p.receivers;
        m.rate_per_sec += p.rate_per_sec;
        m.published += p.published;
        m.acked += p.acked;
        m.publish_errors += p.publish_errors;
        m.unanswered += p.unanswered;
        m.deliveries += p.deliveries;
        m.deliveries_per_sec += p.deliveries_per_sec;
        m.peak_deliveries_per_sec += p.peak_deliveries_per_sec;
        m.accounting.add(&p.accounting);
        m.silent_clients += p.silent_clients;
        m.acked_not_delivered = m.acked_not_delivered.max(p.acked_not_delivered);
        m.witnesses += p.witnesses;
        m.disconnects += p.disconnects;
        m.slow_consumer_disconnects += p.slow_consumer_disconnects;
        m.bad_frames += p.bad_frames;
        if p.selfcheck.verdict != crate::measure::selfcheck::Verdict::Ok {
            m.selfcheck = p.selfcheck.clone();
        }
        m.publish_error_samples
            .extend(p.publish_error_samples.iter().cloned());
    }
    if let Some(h) = latency {
        m.latency = LatencySummary::of(h);
    }
    if let Some(h) = ack {
        m.ack_latency = LatencySummary::of(h);
    }
    Some(m)
}

/// Reads `dirs` (each with latency.hlog and, if present, report.json) and merges them.
pub fn merge_dirs(dirs: &[PathBuf]) -> Result<Merged, MergeError> {
    let mut logs = Vec::new();
    let mut reports: Vec<(PathBuf, RunReport)> = Vec::new();
    for d in dirs {
        logs.push(read_log(d)?);
        if let Some(r) = read_report(d)? {
            reports.push((d.clone(), r));
        }
    }
    if logs.is_empty() {
        return Err(MergeError::Empty);
    }
    let (intervals, by_tag) = merge_intervals(&logs);
    let report = if reports.iter().any(|(_, r)| r.rounds.len() > 1) {
        pool_rounds(dirs, &reports)?
    } else {
        merge_reports(dirs, &reports, &by_tag)
    };
    Ok(Merged {
        report,
        intervals,
        by_tag,
    })
}

/// A directory's `latency.hlog`.
fn read_log(dir: &Path) -> Result<Vec<Interval>, MergeError> {
    let hlog = dir.join("latency.hlog");
    let bytes = std::fs::read(&hlog).map_err(|source| MergeError::Read {
        path: hlog.clone(),
        source,
    })?;
    read_interval_log(&bytes).map_err(|source| MergeError::Histogram { path: hlog, source })
}

/// A directory's `report.json`, when it has one.
fn read_report(dir: &Path) -> Result<Option<RunReport>, MergeError> {
    let json = dir.join("report.json");
    if !json.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&json).map_err(|source| MergeError::Read {
        path: json.clone(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| MergeError::Report {
            path: json,
            message: e.to_string(),
        })
}

/// One report for all: phases summed (latency from the merged histograms),
/// every run's failures and notes under its directory's name.
fn merge_reports(
    dirs: &[PathBuf],
    reports: &[(PathBuf, RunReport)],
    by_tag: &BTreeMap<String, LatencyHistogram>,
) -> RunReport {
    let rtmc_phases: Vec<PhaseReport> =
        reports.iter().filter_map(|(_, r)| r.rtmc.clone()).collect();
    let floor_phases: Vec<PhaseReport> = reports
        .iter()
        .filter_map(|(_, r)| r.floor.clone())
        .collect();
    let rtmc = merge_phases(&rtmc_phases, by_tag.get("rtmc"), by_tag.get("rtmc-ack"));
    let floor = merge_phases(&floor_phases, by_tag.get("floor"), by_tag.get("floor-ack"));
    let first = reports.first().map(|(_, r)| r);
    let mut report = RunReport::new(
        "merge",
        first.map(|r| r.profile.clone()).unwrap_or_default(),
        first.map(|r| r.target_mode.clone()).unwrap_or_default(),
        first.map(|r| r.started_at.clone()).unwrap_or_default(),
        reports
            .iter()
            .map(|(_, r)| r.run_id.clone())
            .collect::<Vec<_>>()
            .join("+"),
    );
    report.comparison = match (&rtmc, &floor) {
        (Some(a), Some(b)) => Some(FloorComparison::of(a, b)),
        _ => None,
    };
    report.rtmc = rtmc;
    report.floor = floor;
    report.peers = merge_peers(reports, by_tag);
    for (d, r) in reports {
        for f in &r.failures {
            report.failures.push(format!("{}: {f}", d.display()));
        }
        for n in &r.notes {
            report.notes.push(format!("{}: {n}", d.display()));
        }
    }
    report.notes.push(format!(
        "merged {} runs: {}",
        dirs.len(),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report
}

/// The phase kinds of a rounds report (rtmc first, then its peers), as its
/// summary lists them.
fn kinds_of(r: &RunReport) -> Vec<String> {
    r.rounds_summary
        .as_ref()
        .map(|s| s.sides.iter().map(|x| x.label.clone()).collect())
        .unwrap_or_default()
}

/// Why `r` cannot be pooled with `first`, if it cannot: a report of
/// another kind or without rounds, other phase kinds, another profile name
/// or load (the number of rounds and how fleets were held may differ).
fn incompatibility(first: &RunReport, r: &RunReport) -> Option<String> {
    if r.kind != "run" || r.rounds.is_empty() {
        return Some(format!("a `{}` report without rounds", r.kind));
    }
    let (a, b) = (kinds_of(first), kinds_of(r));
    if a != b {
        return Some(format!("phase kinds {b:?}, not {a:?}"));
    }
    if first.profile.name != r.profile.name {
        return Some(format!(
            "profile {:?}, not {:?}",
            r.profile.name, first.profile.name
        ));
    }
    let comparable = |r: &RunReport| crate::profile::LoadProfile {
        rounds: 1,
        fleets_per_phase: false,
        ..r.profile.load.clone()
    };
    if comparable(first) != comparable(r) {
        return Some(format!(
            "another load ({} clients × {} msg/s for {} s, not {} × {} for {})",
            r.profile.load.clients,
            r.profile.load.rate_per_sec,
            r.profile.load.duration_secs,
            first.profile.load.clients,
            first.profile.load.rate_per_sec,
            first.profile.load.duration_secs
        ));
    }
    None
}

/// Pools the rounds of `run --rounds` reports (one per directory, all
/// compatible, else an error naming the odd one): every round of every
/// input in input order, renumbered, the summary recomputed over all of
/// them; `rtmc`, `floor`, `peers` and the first fleets are the first
/// input's round 1, as in any rounds report.
pub fn pool_rounds(
    dirs: &[PathBuf],
    reports: &[(PathBuf, RunReport)],
) -> Result<RunReport, MergeError> {
    check_poolable(dirs, reports)?;
    let first = &reports[0].1;
    let mut report = RunReport::new(
        "merge",
        first.profile.clone(),
        first.target_mode.clone(),
        first.started_at.clone(),
        reports
            .iter()
            .map(|(_, r)| r.run_id.clone())
            .collect::<Vec<_>>()
            .join("+"),
    );
    report.connect = first.connect.clone();
    report.floor_connect = first.floor_connect.clone();
    report.rtmc = first.rtmc.clone();
    report.floor = first.floor.clone();
    report.peers = first.peers.clone();
    for (d, r) in reports {
        let offset = report.rounds.len();
        for round in &r.rounds {
            let mut round = round.clone();
            round.round += offset;
            report.rounds.push(round);
        }
        for f in &r.fleet_connects {
            let mut f = f.clone();
            f.round += offset;
            report.fleet_connects.push(f);
        }
        for f in &r.failures {
            report.failures.push(format!("{}: {f}", d.display()));
        }
        for n in &r.notes {
            report.notes.push(format!("{}: {n}", d.display()));
        }
    }
    report.profile.load.rounds = report.rounds.len();
    let kinds = kinds_of(first);
    let labels: Vec<&str> = kinds.iter().map(String::as_str).collect();
    report.rounds_summary = Some(RoundsSummary::of(&report.rounds, &labels));
    report.notes.push(format!(
        "pooled the {} rounds of {} runs ({}): medians and min–max over all of them; rtmc, floor and peers are the first run's round 1; the .hgrm histograms pool every round of every run, and latency.hlog sums the runs' intervals by second since each run's start",
        report.rounds.len(),
        reports.len(),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(report)
}

/// Every directory has a report.json and every report can be pooled with
/// the first; else an error naming the odd one.
fn check_poolable(dirs: &[PathBuf], reports: &[(PathBuf, RunReport)]) -> Result<(), MergeError> {
    if let Some(d) = dirs
        .iter()
        .find(|d| !reports.iter().any(|(rd, _)| rd == *d))
    {
        return Err(MergeError::Report {
            path: d.clone(),
            message: "missing: the rounds of `run --rounds` reports are pooled from report.json"
                .into(),
        });
    }
    let (first_dir, first) = &reports[0];
    for (d, r) in reports {
        if let Some(message) = incompatibility(first, r) {
            return Err(MergeError::Incompatible {
                path: d.clone(),
                first: first_dir.clone(),
                message,
            });
        }
    }
    Ok(())
}

/// The NATS peers of every run, by label in the order they first appear:
/// phases summed (latency from the merged `<label>` and `<label>-ack`
/// histograms), the first run's server and connect report.
fn merge_peers(
    reports: &[(PathBuf, RunReport)],
    by_tag: &BTreeMap<String, LatencyHistogram>,
) -> Vec<PeerReport> {
    let mut labels: Vec<&str> = Vec::new();
    for p in reports.iter().flat_map(|(_, r)| &r.peers) {
        if !labels.contains(&p.label.as_str()) {
            labels.push(&p.label);
        }
    }
    labels
        .into_iter()
        .filter_map(|label| {
            let of_label: Vec<&PeerReport> = reports
                .iter()
                .flat_map(|(_, r)| &r.peers)
                .filter(|p| p.label == label)
                .collect();
            let phases: Vec<PhaseReport> = of_label.iter().map(|p| p.phase.clone()).collect();
            let phase = merge_phases(
                &phases,
                by_tag.get(label),
                by_tag.get(&format!("{label}-ack")),
            )?;
            Some(PeerReport {
                phase,
                ..of_label[0].clone()
            })
        })
        .collect()
}

/// The start time recorded in a directory's log, for the merged log header.
pub fn start_time_of(dir: &Path) -> Option<std::time::SystemTime> {
    let bytes = std::fs::read(dir.join("latency.hlog")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().find(|l| l.starts_with("#[StartTime: "))?;
    let secs: f64 = line
        .trim_start_matches("#[StartTime: ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::histogram::{record_us, write_interval_log};
    use crate::report::rounds::RoundPhases;

    fn interval(tag: &str, start_secs: u64, values: &[u64]) -> Interval {
        let mut h = new_histogram();
        for &v in values {
            record_us(&mut h, v);
        }
        Interval {
            start: Duration::from_secs(start_secs),
            length: Duration::from_secs(1),
            tag: tag.into(),
            histogram: h,
        }
    }

    #[test]
    fn logs_from_two_processes_merge_per_tag_and_second() {
        let a = vec![
            interval("rtmc", 0, &[1000, 2000]),
            interval("rtmc", 1, &[3000]),
        ];
        let b = vec![interval("rtmc", 0, &[4000]), interval("floor", 0, &[500])];
        let (intervals, by_tag) = merge_intervals(&[a, b]);
        assert_eq!(by_tag["rtmc"].len(), 4);
        assert_eq!(by_tag["floor"].len(), 1);
        let first = intervals
            .iter()
            .find(|i| i.tag == "rtmc" && i.start.as_secs() == 0)
            .unwrap();
        assert_eq!(first.histogram.len(), 3);
        assert!((LatencySummary::of(&by_tag["rtmc"]).max_ms - 4.0).abs() < 0.01);
    }

    /// `root/host<k>/latency.hlog` holding `log`, as one loadgen process writes it.
    fn host_dir(root: &Path, k: usize, log: &[Interval]) -> PathBuf {
        let d = root.join(format!("host{k}"));
        std::fs::create_dir_all(&d).unwrap();
        let mut buf = Vec::new();
        write_interval_log(&mut buf, std::time::SystemTime::now(), log).unwrap();
        std::fs::write(d.join("latency.hlog"), buf).unwrap();
        d
    }

    #[test]
    fn merges_directories_written_by_runs() {
        let root = std::env::temp_dir().join(format!("lg-merge-{}", std::process::id()));
        let mut dirs = Vec::new();
        for (k, vals) in [[1000u64, 2000], [3000, 4000]].iter().enumerate() {
            dirs.push(host_dir(&root, k, &[interval("rtmc", 0, vals)]));
        }
        let m = merge_dirs(&dirs).unwrap();
        assert_eq!(m.by_tag["rtmc"].len(), 4);
        assert!(m.report.peers.is_empty());
        assert!(start_time_of(&dirs[0]).is_some());
        assert!(merge_dirs(&[root.join("missing")]).is_err());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A `run --rounds` report of rtmc and the floor whose rtmc p99 in
    /// round i is `p99s[i]` (the floor's is 1 ms).
    fn rounds_report(id: &str, p99s: &[f64]) -> RunReport {
        let mut r = RunReport::new(
            "run",
            Default::default(),
            "embedded".into(),
            "t".into(),
            id.into(),
        );
        let phase = |label: &str, p99: f64| {
            let mut p = PhaseReport {
                label: label.into(),
                published: 10,
                ..Default::default()
            };
            p.latency.p99_ms = p99;
            p
        };
        r.rounds = p99s
            .iter()
            .enumerate()
            .map(|(i, p99)| RoundPhases {
                round: i + 1,
                phases: vec![phase("rtmc", *p99), phase("floor", 1.0)],
            })
            .collect();
        r.profile.load.rounds = p99s.len();
        r.rtmc = Some(r.rounds[0].phases[0].clone());
        r.rounds_summary = Some(RoundsSummary::of(&r.rounds, &["rtmc", "floor"]));
        r
    }

    /// `root/<name>` with `r`'s report.json and an rtmc interval log.
    fn report_dir(root: &Path, name: &str, r: &RunReport) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut buf = Vec::new();
        let log = [interval("rtmc", 0, &[1000])];
        write_interval_log(&mut buf, std::time::SystemTime::now(), &log).unwrap();
        std::fs::write(d.join("latency.hlog"), buf).unwrap();
        std::fs::write(d.join("report.json"), serde_json::to_vec(r).unwrap()).unwrap();
        d
    }

    #[test]
    fn rounds_reports_pool_their_rounds_and_recompute_the_spread() {
        let root = std::env::temp_dir().join(format!("lg-merge-rounds-{}", std::process::id()));
        let a = report_dir(&root, "a", &rounds_report("a", &[10.0, 30.0, 20.0]));
        let b = report_dir(&root, "b", &rounds_report("b", &[50.0, 5.0]));
        let m = merge_dirs(&[a.clone(), b]).unwrap();
        let r = &m.report;
        let numbers: Vec<usize> = r.rounds.iter().map(|x| x.round).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        assert_eq!(r.profile.load.rounds, 5);
        let s = r.rounds_summary.as_ref().unwrap();
        assert_eq!(s.rounds, 5);
        let p99 = s.sides[0]
            .metrics
            .iter()
            .find(|x| x.metric == "recv_p99")
            .unwrap();
        assert_eq!(p99.values, [10.0, 30.0, 20.0, 50.0, 5.0]);
        let sp = p99.spread.unwrap();
        // Over all five rounds (input a alone: 20 [10–30]).
        assert_eq!((sp.median, sp.min, sp.max, sp.n), (20.0, 5.0, 50.0, 5));
        let ratio = s.ratios[0]
            .metrics
            .iter()
            .find(|x| x.metric == "recv_p99")
            .unwrap();
        assert_eq!(ratio.values.len(), 5);
        // round 1 of the first input stands as `rtmc`; nothing is summed.
        assert_eq!(r.rtmc.as_ref().unwrap().published, 10);
        assert!(r.comparison.is_none());
        assert!(r
            .notes
            .iter()
            .any(|n| n.starts_with("pooled the 5 rounds of 2 runs")));
        let text = crate::report::text::render_text(r);
        assert!(text.contains("5 interleaved rounds"), "{text}");
        // Another load cannot be pooled: the error names the input.
        let mut other = rounds_report("c", &[1.0, 2.0]);
        other.profile.load.clients *= 2;
        let c = report_dir(&root, "c", &other);
        let err = merge_dirs(&[a.clone(), c.clone()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cannot pool") && err.contains("another load"),
            "{err}"
        );
        // Nor other phase kinds.
        let mut rtmc_only = rounds_report("d", &[1.0, 2.0]);
        rtmc_only.rounds_summary = Some(RoundsSummary::of(&rtmc_only.rounds, &["rtmc"]));
        let d = report_dir(&root, "d", &rtmc_only);
        let err = merge_dirs(&[a.clone(), d]).err().unwrap().to_string();
        assert!(err.contains("phase kinds"), "{err}");
        // Nor a directory without report.json.
        let bare = host_dir(&root, 9, &[interval("rtmc", 0, &[1000])]);
        let err = merge_dirs(&[a, bare]).err().unwrap().to_string();
        assert!(err.contains("report.json"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn merge_keeps_the_peers() {
        let root = std::env::temp_dir().join(format!("lg-merge-peers-{}", std::process::id()));
        let mut dirs = Vec::new();
        for (k, vals) in [[1000u64, 2000], [3000, 4000]].iter().enumerate() {
            let log = [
                interval("rtmc", 0, vals),
                interval("nats", 0, vals),
                interval("nats-ack", 0, &[500]),
                interval("jetstream", 0, vals),
            ];
            let d = host_dir(&root, k, &log);
            let mut r = RunReport::new(
                "run",
                Default::default(),
                "embedded".into(),
                "t".into(),
                format!("{k}"),
            );
            for label in ["nats", "jetstream"] {
                r.peers.push(PeerReport {
                    label: label.into(),
                    server: "embedded nats-server".into(),
                    connect: Default::default(),
                    phase: PhaseReport {
                        label: label.into(),
                        published: 10,
                        deliveries: 20,
                        ..Default::default()
                    },
                });
            }
            std::fs::write(d.join("report.json"), serde_json::to_vec(&r).unwrap()).unwrap();
            dirs.push(d);
        }
        let m = merge_dirs(&dirs).unwrap();
        let labels: Vec<&str> = m.report.peers.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["nats", "jetstream"]);
        let nats = &m.report.peers[0].phase;
        assert_eq!((nats.published, nats.deliveries), (20, 40));
        // Latency from the merged histograms: both hosts' 4 values.
        assert!(
            (nats.latency.max_ms - 4.0).abs() < 0.01,
            "{:?}",
            nats.latency
        );
        assert!((nats.ack_latency.max_ms - 0.5).abs() < 0.01);
        assert!(crate::report::text::render_text(&m.report).contains("== side by side"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
