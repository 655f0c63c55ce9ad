//! `chaos run` through the binary: a shipped scenario end to end on its own
//! stack (the report, the plot with its fault windows, the replayable
//! schedule, exit code 0 for a valid history), a bad scenario (exit 2 and
//! the error), and `--random --seed` drawing the same schedule twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .output()
        .expect("the chaos binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chaos-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `chaos/scenarios/client-storm.toml` (12 s of load: a disconnect
/// storm with resuming reconnects, slow readers, half-open clients) and
/// checks what it reports: every fault in effect and undone, recovery
/// times, a valid history with PostgreSQL's rows, and exit code 0.
#[test]
fn a_shipped_scenario_runs_end_to_end_and_reports() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/client-storm.toml");
    let out = scratch("storm");
    let o = chaos(&[
        "run",
        file.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--quiet",
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr tail:\n{}",
        tail(&stderr)
    );
    assert!(stdout.contains("history check: VALID"), "{stdout}");
    assert!(stdout.contains("RESULT: PASS"), "{stdout}");
    assert!(stdout.contains("last client caught up after"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("report.json is JSON");
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["verdict"]["valid"], true, "{report:#}");
    assert_eq!(report["verdict"]["totals"]["lost"], 0);
    assert_eq!(report["verdict"]["totals"]["gaps"], 0);
    let published = report["load"]["published"].as_u64().expect("published");
    assert_eq!(published, 600, "50 msg/s for 12 s");
    assert_eq!(
        report["verdict"]["stored"]["rows"].as_u64(),
        Some(published)
    );
    let faults = report["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 3);
    for f in faults {
        let w = &f["window"];
        assert!(w["error"].is_null(), "{f:#}");
        let (start, end) = (w["started_secs"].as_f64(), w["ended_secs"].as_f64());
        assert!(matches!((start, end), (Some(s), Some(e)) if e > s), "{f:#}");
        assert!(f["first_ack_after_end_secs"].as_f64().is_some(), "{f:#}");
    }
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).expect("history.json"))
            .expect("history JSON");
    let events = history["clients"].to_string();
    assert_eq!(
        events.matches("chaos: dropped").count(),
        10,
        "half of 20 dropped"
    );
    assert_eq!(
        events.matches("\"resumed\"").count(),
        10,
        "every one resumed"
    );

    let svg = std::fs::read_to_string(out.join("chaos.svg")).expect("chaos.svg");
    for label in [
        "1. disconnect storm 50% of clients, resuming at 2s for 2s",
        "deliveries/s",
        "acks/s",
        "p99",
    ] {
        assert!(
            svg.lines().any(|l| l.trim() == label),
            "the plot lacks {label:?}"
        );
    }
    let replay = std::fs::read_to_string(out.join("scenario.toml")).expect("scenario.toml");
    let again = rtmc_chaos::scenario::Scenario::from_toml(&replay).expect("replayable");
    let shipped = rtmc_chaos::scenario::Scenario::from_path(&file).expect("shipped");
    assert_eq!(again.faults, shipped.faults);
    let _ = std::fs::remove_dir_all(&out);
}

/// The exit code follows the checker: a saved history with an acknowledged
/// message a connected client never got fails `chaos check` with 1 (the
/// rule `chaos run` applies to its own history), a clean one passes.
#[test]
fn an_invalid_history_fails_with_exit_code_1() {
    let dir = scratch("check");
    std::fs::create_dir_all(&dir).expect("dir");
    for (lose, code, word) in [(true, 1, "INVALID"), (false, 0, "VALID")] {
        let recording = rtmc_chaos::Recording::start();
        {
            let mut publisher = recording.publisher("p");
            let mut client = recording.client("c");
            client.connected(0, None);
            let op = publisher.invoke("m-1");
            publisher.ok(op);
            if !lose {
                client.delivered(1, "m-1");
            }
        }
        let file = dir.join(format!("history-{lose}.json"));
        recording
            .finish()
            .expect("finished")
            .save(&file)
            .expect("saved");
        let o = chaos(&["check", file.to_str().expect("utf-8 path")]);
        let stdout = text(&o.stdout);
        assert_eq!(o.status.code(), Some(code), "{stdout}{}", text(&o.stderr));
        assert!(
            stdout.contains(&format!("history check: {word}")),
            "{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_scenario_exits_2_with_the_reason() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "faults = [ { at = \"5s\", for = \"1s\", fault = \"sigkill\", target = \"kafka\" } ]\n[load]\nduration = \"10s\"\n",
    )
    .expect("write");
    let o = chaos(&["run", file.to_str().expect("utf-8 path")]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fault 1 (sigkill): unknown target \"kafka\""),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_seed_prints_the_same_schedule() {
    let args = [
        "run",
        "--random",
        "--seed",
        "42",
        "--duration",
        "30s",
        "--dry-run",
    ];
    let (a, b) = (chaos(&args), chaos(&args));
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    let out = text(&a.stdout);
    assert!(out.contains("seed 42"), "{out}");
    assert!(
        out.contains("[[faults]]") && out.contains("name = \"random-42\""),
        "{out}"
    );
    assert_eq!(out, text(&b.stdout));
    let other = text(&chaos(&["run", "--random", "--seed", "43", "--dry-run"]).stdout);
    assert_ne!(out.replace("42", ""), other.replace("43", ""));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
