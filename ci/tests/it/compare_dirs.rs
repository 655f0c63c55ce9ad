//! `gate --compare DIR_A DIR_B` on saved rounds: nothing runs, the verdict,
//! the exit code and the report files come from the directories alone.

use std::path::Path;
use std::process::{Command, Output};

use crate::fixtures::{assert_gate_files, baseline_toml, output_text as text, write_sides};

fn compare(a: &Path, b: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gate"))
        .arg("--config")
        .arg(baseline_toml())
        .arg("--compare")
        .arg(a)
        .arg(b)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn a_fifty_percent_slower_candidate_fails_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = write_sides(tmp.path(), 3, 1.5, 1.0);
    let out = tmp.path().join("out");
    let o = compare(&a, &b, &out);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("RESULT: REGRESSION"), "{stdout}");
    assert!(stdout.contains("publish→receive p99 ms"), "{stdout}");
    assert_gate_files(&out);
    let md = std::fs::read_to_string(out.join("gate-report.md")).unwrap();
    assert!(md.starts_with("## Latency gate: REGRESSION"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gate.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"], "regression");
    assert_eq!(json["rounds"].as_array().unwrap().len(), 6);
    let svg = std::fs::read_to_string(out.join("rounds.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("circle"), "svg");
}

#[test]
fn an_unchanged_candidate_passes_and_says_so_modestly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = write_sides(tmp.path(), 3, 1.0, 1.0);
    let out = tmp.path().join("out");
    let o = compare(&a, &b, &out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("gate-report.md")).unwrap();
    assert!(md.contains("no regression detected at ±25%"), "{md}");
    assert!(!md.contains("no regression\n"), "{md}");
}

#[test]
fn a_slower_machine_on_the_candidate_side_is_not_blamed_on_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    // rtmc and the floor both 60% slower during the B rounds.
    let (a, b) = write_sides(tmp.path(), 3, 1.0, 1.6);
    let out = tmp.path().join("out");
    let o = compare(&a, &b, &out);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("machine drift"), "{stdout}");
}

#[test]
fn a_failed_candidate_round_fails_the_gate_and_too_few_rounds_cannot_be_judged() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = write_sides(tmp.path(), 3, 1.0, 1.0);
    let report = b.join("pair-02/report.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    v["failures"] = serde_json::json!(["rtmc: LOSS: 3 expected deliveries never arrived"]);
    std::fs::write(&report, v.to_string()).unwrap();
    let o = compare(&a, &b, &tmp.path().join("out"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("B2: rtmc: LOSS"), "{}", text(&o));

    let (a, b) = write_sides(&tmp.path().join("two"), 2, 1.0, 1.0);
    let o = compare(&a, &b, &tmp.path().join("out2"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("too few rounds"), "{}", text(&o));

    // Too few rounds showing a large change: the rows say "not judged",
    // never REGRESSION, since the result is ERROR.
    let (a, b) = write_sides(&tmp.path().join("two-slow"), 2, 1.0, 1.5);
    let o = compare(&a, &b, &tmp.path().join("out3"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("not judged"), "{stdout}");
    assert!(!stdout.contains("REGRESSION"), "{stdout}");
}
