//! Runs `loadgen run` in-process against an embedded stack: 20 clients,
//! 50 msg/s for 3 s, then the floor. It must see no loss and write every
//! report file. Needs Docker and the `rtmc` binary, which it builds.

use std::path::PathBuf;
use std::process::Command;

use rtmc_loadgen::histogram::read_interval_log;
use rtmc_loadgen::profile::Profile;
use rtmc_loadgen::report::render_text;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_embedded_load_has_no_loss_and_writes_a_report() {
    build_rtmc();
    let out: PathBuf = std::env::temp_dir().join(format!("loadgen-e2e-{}", std::process::id()));
    let mut profile = Profile {
        name: "e2e".into(),
        ..Default::default()
    };
    profile.load.clients = 20;
    profile.load.rate_per_sec = 50.0;
    profile.load.duration_secs = 3.0;
    profile.load.drain_timeout_secs = 10.0;
    profile.output.out = Some(out.clone());
    profile.output.quiet = true;

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
