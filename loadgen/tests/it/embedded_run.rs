//! Runs `loadgen run` in-process against an embedded stack: 20 clients,
//! 50 msg/s for 3 s, then the floor. It must see no loss and write every
//! report file. Needs Docker and the `rtmc` binary, which it builds.

use std::path::PathBuf;
use std::process::Command;

use rtmc_loadgen::measure::histogram::read_interval_log;
use rtmc_loadgen::profile::Profile;
use rtmc_loadgen::report::text::render_text;
use rtmc_loadgen::run::{execute, Mode};

/// Builds the `rtmc` binary into this test's target directory (where the
/// test kit looks for it) with the same profile; fails loudly if it cannot.
pub(crate) fn build_rtmc() {
    if std::env::var("RTMC_BIN").is_ok() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "rtmc-system", "--bin", "rtmc"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("loadgen e2e: cannot run cargo to build rtmc: {e}"));
    assert!(
        status.success(),
        "loadgen e2e: `cargo build -p rtmc-system --bin rtmc` failed ({status}); the test needs the rtmc binary"
    );
}

/// A quiet profile named `name`: `clients` receivers, `rate_per_sec` for
/// `duration_secs`, a 10 s drain, writing into a fresh temporary report
/// directory (returned).
fn tiny_profile(
    name: &str,
    clients: usize,
    rate_per_sec: f64,
    duration_secs: f64,
) -> (Profile, PathBuf) {
    let out = std::env::temp_dir().join(format!("loadgen-{name}-{}", std::process::id()));
    let mut profile = Profile {
        name: name.into(),
        ..Default::default()
    };
    profile.load.clients = clients;
    profile.load.rate_per_sec = rate_per_sec;
    profile.load.duration_secs = duration_secs;
    profile.load.drain_timeout_secs = 10.0;
    profile.output.out = Some(out.clone());
    profile.output.quiet = true;
    (profile, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_embedded_load_has_no_loss_and_writes_a_report() {
    build_rtmc();
    let (profile, out) = tiny_profile("e2e", 20, 50.0, 3.0);

    let outcome = execute(profile, Mode::Run)
        .await
        .unwrap_or_else(|e| panic!("loadgen could not run (is Docker up?): {e}"));
    let text = render_text(&outcome.report);
    assert!(outcome.report.passed(), "the run failed:\n{text}");

    let rtmc = outcome.report.rtmc.as_ref().expect("an rtmc phase");
    assert_eq!(rtmc.receivers, 20, "{text}");
    assert_eq!(rtmc.published, 150, "{text}");
    assert_eq!(rtmc.acked, 150, "{text}");
    assert_eq!(rtmc.accounting.expected, 20 * 150, "{text}");
    assert_eq!(rtmc.accounting.received, 20 * 150, "{text}");
    assert_eq!(rtmc.accounting.lost, 0, "{text}");
    assert_eq!(rtmc.accounting.duplicates, 0, "{text}");
    assert_eq!(rtmc.acked_not_delivered, 0, "{text}");
    assert_eq!(rtmc.latency.count, 20 * 150, "{text}");
    let floor = outcome.report.floor.as_ref().expect("a floor phase");
    assert_eq!(floor.accounting.received, 20 * 150, "{text}");
    assert!(outcome.report.comparison.is_some());

    for f in [
        "report.txt",
        "report.json",
        "latency.hlog",
        "latency.hgrm",
        "floor.hgrm",
        "latency_over_time.svg",
        "percentile_spectrum.svg",
    ] {
        let meta = std::fs::metadata(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 0, "{f} is empty");
    }
    let log = std::fs::read(out.join("latency.hlog")).unwrap();
    let intervals = read_interval_log(&log).unwrap();
    let rtmc_count: u64 = intervals
        .iter()
        .filter(|i| i.tag == "rtmc")
        .map(|i| i.histogram.len())
        .sum();
    assert_eq!(rtmc_count, 20 * 150);
    let _ = std::fs::remove_dir_all(&out);
}

/// `run --rounds 3 --fleets-per-phase --blaster` at tiny scale: three
/// phases per side in the alternating order, each on a freshly connected
/// fleet (the path four 5k or 10k fleets take on a 20,000 fd limit) with
/// its own accounting and server CPU, the summaries and ratios, the
/// blaster reference, and report.json carrying it all. (Kept fleets: the
/// NATS peers' test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_interleaved_rounds_give_three_phases_per_side_and_summaries() {
    build_rtmc();
    let (mut profile, out) = tiny_profile("e2e-rounds", 10, 40.0, 2.0);
    profile.load.rounds = 3;
    profile.load.fleets_per_phase = true;
    profile.blaster.enabled = true;
    profile.blaster.frames_per_write = 8;

    let outcome = execute(profile, Mode::Run)
        .await
        .unwrap_or_else(|e| panic!("loadgen could not run (is Docker up?): {e}"));
    let r = &outcome.report;
    let text = render_text(r);
    assert!(r.passed(), "the run failed:\n{text}");
    assert_eq!(
        r.schema_version,
        rtmc_loadgen::report::types::SCHEMA_VERSION
    );

    assert_eq!(r.rounds.len(), 3, "{text}");
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("fleets connected per phase")),
        "{text}"
    );
    // Each kind's fleets, by round; rtmc's `connect` is its round-1 fleet,
    // the only one that weighs the server (a replacement would read ~0 KiB).
    let fleets: Vec<(&str, usize)> = r
        .fleet_connects
        .iter()
        .map(|f| (f.label.as_str(), f.round))
        .collect();
    assert_eq!(
        fleets,
        [
            ("rtmc", 1),
            ("floor", 1),
            ("floor", 2),
            ("rtmc", 2),
            ("rtmc", 3),
            ("floor", 3)
        ],
        "{text}"
    );
    let first = r.connect.as_ref().expect("rtmc's connect");
    assert!(first.server_kib_per_client.is_some(), "{first:?}");
    for f in r
        .fleet_connects
        .iter()
        .filter(|f| f.label == "rtmc" && f.round > 1)
    {
        assert!(f.connect.server_kib_per_client.is_none(), "{f:?}");
        assert!(f.connect.server_memory_not_measured.is_some(), "{f:?}");
    }
    assert!(text.contains("rtmc connect, all 3 fleets"), "{text}");
    let order: Vec<Vec<&str>> = r
        .rounds
        .iter()
        .map(|round| round.phases.iter().map(|p| p.label.as_str()).collect())
        .collect();
    assert_eq!(
        order,
        [["rtmc", "floor"], ["floor", "rtmc"], ["rtmc", "floor"]],
        "{text}"
    );
    for round in &r.rounds {
        for p in &round.phases {
            // 40/s × 2 s to 10 receivers, counted per round, not cumulatively.
            assert_eq!(
                p.published, 80,
                "round {} {}:\n{text}",
                round.round, p.label
            );
            assert_eq!(p.accounting.expected, 10 * 80, "{text}");
            assert_eq!(p.accounting.received, 10 * 80, "{text}");
            assert_eq!(p.accounting.lost, 0, "{text}");
            assert_eq!(
                p.accounting.duplicates + p.accounting.out_of_order,
                0,
                "{text}"
            );
            let cpu = p.server_cpu.first().expect("a server CPU figure");
            assert!(
                cpu.cpu_secs.is_some() && cpu.cpu_secs_per_million_deliveries.is_some(),
                "round {} {}: {cpu:?}",
                round.round,
                p.label
            );
        }
        let rtmc = round.phases.iter().find(|p| p.label == "rtmc").unwrap();
        assert_eq!(rtmc.server_cpu[0].what, "rtmc server nodes");
        assert_eq!(rtmc.acked_not_delivered, 0, "{text}");
        let floor = round.phases.iter().find(|p| p.label == "floor").unwrap();
        assert_eq!(floor.server_cpu[0].what, "redis-server");
    }
    // Round 1 stands in the fields the gate reads.
    assert_eq!(
        r.rtmc.as_ref().unwrap().timing,
        r.rounds[0].phases[0].timing
    );

    let s = r.rounds_summary.as_ref().expect("a rounds summary");
    assert_eq!(s.rounds, 3);
    let labels: Vec<&str> = s.sides.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(labels, ["rtmc", "floor"]);
    for side in &s.sides {
        for m in &side.metrics {
            let sp = m
                .spread
                .unwrap_or_else(|| panic!("{} {}: no spread", side.label, m.metric));
            assert_eq!(
                (m.values.len(), sp.n),
                (3, 3),
                "{} {}",
                side.label,
                m.metric
            );
            assert!(sp.min <= sp.median && sp.median <= sp.max, "{m:?}");
        }
    }
    assert_eq!(s.ratios.len(), 1);
    assert_eq!(s.ratios[0].peer, "floor");
    let p99 = s.ratios[0]
        .metrics
        .iter()
        .find(|m| m.metric == "recv_p99")
        .unwrap();
    assert_eq!(p99.values.len(), 3);
    assert!(p99.spread.unwrap().median > 0.0);
    assert!(text.contains("3 interleaved rounds"), "{text}");
    assert!(text.contains("rtmc÷floor"), "{text}");

    let reference = r.reference.as_ref().expect("the blaster reference");
    let per_write: Vec<usize> = reference.runs.iter().map(|b| b.frames_per_write).collect();
    assert_eq!(per_write, [1, 8]);
    for b in &reference.runs {
        assert_eq!(b.deliveries, 10 * 80, "{b:?}");
    }

    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    let back: rtmc_loadgen::report::types::RunReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rounds.len(), 3);
    assert!(back.rounds_summary.is_some() && back.reference.is_some());
    let _ = std::fs::remove_dir_all(&out);
}
