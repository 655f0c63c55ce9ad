//! The contract with loadgen: the fixture is a report loadgen's own
//! `RunReport` reads, and the gate's narrow view reads the same numbers.

use rtmc_ci::metric::Metric;
use rtmc_ci::round::{load_round, read_report, Side};

use crate::fixtures::{fixture_path, write_round};

#[test]
fn the_fixture_is_a_current_loadgen_report() {
    let text = std::fs::read_to_string(fixture_path()).unwrap();
    let full: rtmc_loadgen::report::types::RunReport = serde_json::from_str(&text).unwrap();
    assert_eq!(full.kind, "run");
    // The gate reads a directory; the fixture file is loaded through one.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(fixture_path(), tmp.path().join("report.json")).unwrap();
    let view = read_report(tmp.path()).unwrap();
    let (rtmc, floor) = (full.rtmc.unwrap(), full.floor.unwrap());
    let (vr, vf) = (view.rtmc.unwrap(), view.floor.unwrap());
    assert_eq!(vr.latency.p99_ms, rtmc.latency.p99_ms);
    assert_eq!(vr.latency.p99_9_ms, rtmc.latency.p99_9_ms);
    assert_eq!(vr.ack_latency.p50_ms, rtmc.ack_latency.p50_ms);
    assert_eq!(vr.deliveries_per_sec, rtmc.deliveries_per_sec);
    assert_eq!(vf.latency.p50_ms, floor.latency.p50_ms);
    assert_eq!(vf.ack_latency.p99_9_ms, floor.ack_latency.p99_9_ms);
    assert_eq!(view.failures, full.failures);
    // The fixture predates `schema_version`: both read it as shape 1.
    assert_eq!((full.schema_version, view.schema_version), (1, 1));
}

#[test]
fn the_gate_knows_the_shape_loadgen_writes_now() {
    let now = rtmc_loadgen::report::types::SCHEMA_VERSION;
    assert!(
        now <= rtmc_ci::round::MAX_SCHEMA_VERSION,
        "loadgen writes report.json schema {now}; teach the gate's round view it"
    );
    let fresh = rtmc_loadgen::report::types::RunReport::new(
        "run",
        Default::default(),
        "embedded".into(),
        String::new(),
        "id".into(),
    );
    let json = serde_json::to_value(&fresh).unwrap();
    assert_eq!(json["schema_version"], now);
    assert_eq!(json["loadgen_version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_report_with_interleaved_rounds_reads_as_its_first_round() {
    let text = std::fs::read_to_string(fixture_path()).unwrap();
    let old: rtmc_loadgen::report::types::RunReport = serde_json::from_str(&text).unwrap();
    let (rtmc, floor) = (old.rtmc.unwrap(), old.floor.unwrap());
    let mut now = rtmc_loadgen::report::types::RunReport::new(
        "run",
        Default::default(),
        "embedded".into(),
        String::new(),
        "id".into(),
    );
    let mut slower = rtmc.clone();
    slower.latency.p99_ms *= 3.0;
    now.rounds = vec![
        rtmc_loadgen::report::rounds::RoundPhases {
            round: 1,
            phases: vec![rtmc.clone(), floor.clone()],
        },
        rtmc_loadgen::report::rounds::RoundPhases {
            round: 2,
            phases: vec![floor.clone(), slower],
        },
    ];
    now.rounds_summary = Some(rtmc_loadgen::report::rounds::RoundsSummary::of(
        &now.rounds,
        &["rtmc", "floor"],
    ));
    now.rtmc = Some(rtmc.clone());
    now.floor = Some(floor.clone());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("report.json"),
        serde_json::to_string_pretty(&now).unwrap(),
    )
    .unwrap();
    let r = load_round(tmp.path(), Side::Baseline, 0, 0).unwrap();
    assert_eq!(r.value(Metric::RecvP99), rtmc.latency.p99_ms);
    assert_eq!(r.control(Metric::RecvP50), Some(floor.latency.p50_ms));
}

#[test]
fn a_round_directory_gives_every_metric_and_its_control() {
    let tmp = tempfile::tempdir().unwrap();
    write_round(tmp.path(), 1.0, 1.0);
    let r = load_round(tmp.path(), Side::Baseline, 0, 0).unwrap();
    assert_eq!(r.value(Metric::RecvP50), 11.175);
    assert_eq!(r.value(Metric::RecvP99), 382.207);
    assert_eq!(r.value(Metric::AckP99_9), 463.615);
    assert_eq!(r.control(Metric::RecvP50), Some(5.159));
    assert_eq!(r.control(Metric::DeliveriesPerSec), Some(20000.0));
    assert!((r.corrected(Metric::RecvP50).unwrap() - 11.175 / 5.159).abs() < 1e-12);
    assert!(r.failures.is_empty());
}

#[test]
fn a_directory_without_a_report_is_an_error_not_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_round(tmp.path(), Side::Candidate, 0, 1).unwrap_err();
    assert!(err.to_string().contains("report.json"), "{err}");
}
