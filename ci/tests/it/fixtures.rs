//! Round directories for the tests: copies of a real loadgen `report.json`
//! (`tests/fixtures/smoke-report.json`, from a `loadgen run --profile
//! smoke.toml` on this machine) with the rtmc and floor values scaled.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

/// The shipped `ci/baseline.toml`.
pub fn baseline_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline.toml")
}

/// stdout then stderr of a finished `gate`, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The files every judgement writes.
pub fn assert_gate_files(out: &Path) {
    for f in [
        "gate.json",
        "gate-report.md",
        "gate-report.txt",
        "rounds.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} in {}", out.display());
    }
}

pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smoke-report.json")
}

pub fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_path()).unwrap()).unwrap()
}

fn scale_phase(phase: &mut Value, latency_scale: f64) {
    for summary in ["latency", "ack_latency"] {
        for key in ["p50_ms", "p99_ms", "p99_9_ms"] {
            let v = &mut phase[summary][key];
            *v = Value::from(v.as_f64().unwrap() * latency_scale);
        }
    }
    let d = &mut phase["deliveries_per_sec"];
    *d = Value::from(d.as_f64().unwrap() / latency_scale);
}

/// Writes `dir/report.json`: the fixture with rtmc's latencies × `rtmc_scale`
/// (its throughput ÷ it) and the floor's × `floor_scale`.
pub fn write_round(dir: &Path, rtmc_scale: f64, floor_scale: f64) {
    let mut v = fixture();
    scale_phase(&mut v["rtmc"], rtmc_scale);
    scale_phase(&mut v["floor"], floor_scale);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&v).unwrap(),
    )
    .unwrap();
}

/// Small, fixed round-to-round jitter so intervals are not points.
pub const JITTER: [f64; 5] = [1.0, 1.012, 0.991, 1.006, 0.996];

/// `pairs` baseline rounds under `root/a` and candidate rounds under
/// `root/b`, the candidate's rtmc × `effect`, its floor × `machine`.
pub fn write_sides(root: &Path, pairs: usize, effect: f64, machine: f64) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("a"), root.join("b"));
    for i in 0..pairs {
        let j = JITTER[i % JITTER.len()];
        write_round(&a.join(format!("pair-{:02}", i + 1)), j, j);
        let k = JITTER[(i + 2) % JITTER.len()];
        write_round(
            &b.join(format!("pair-{:02}", i + 1)),
            k * effect * machine,
            k * machine,
        );
    }
    (a, b)
}
