//! The whole `gate` run path without a real stack: fake `loadgen` (a shell
//! script writing a report whose latencies scale with the number in the
//! file `RTMC_BIN` names, and with `RTMC_TEST_BROADCAST_DELAY_US`), fake
//! `rtmc` files, and for the baseline build a fake `cargo` on `PATH` in a
//! throwaway git repository. Checks the interleaving order, the environment
//! of each round, the files and the exit codes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixtures::{assert_gate_files, baseline_toml, output_text as text};

/// Appends "<side>/<pair> RTMC_BIN=<path> DELAY=<us|none>" to
/// $FAKE_LOADGEN_LOG and writes a report: latencies = base × the number in
/// $RTMC_BIN × (1 + delay/1000) × a small per-round jitter; the floor
/// unscaled. Exits with $FAKE_LOADGEN_EXIT when set.
const FAKE_LOADGEN: &str = r#"#!/bin/sh
out=""
while [ $# -gt 0 ]; do
  case "$1" in --out) out="$2"; shift ;; esac
  shift
done
[ -n "$FAKE_LOADGEN_EXIT" ] && { echo "fake loadgen: cannot run" >&2; exit "$FAKE_LOADGEN_EXIT"; }
n=$(cat "$FAKE_LOADGEN_LOG" 2>/dev/null | wc -l)
echo "$(basename "$(dirname "$out")")/$(basename "$out") RTMC_BIN=$RTMC_BIN DELAY=${RTMC_TEST_BROADCAST_DELAY_US:-none}" >> "$FAKE_LOADGEN_LOG"
s=$(awk -v b="$(cat "$RTMC_BIN")" -v d="${RTMC_TEST_BROADCAST_DELAY_US:-0}" -v n="$n" \
  'BEGIN { printf "%.6f", b * (1 + d / 1000) * (1 + 0.01 * (n % 3)) }')
j=$(awk -v n="$n" 'BEGIN { printf "%.6f", 1 + 0.01 * ((n + 1) % 3) }')
phase() { # label scale
  awk -v l="$1" -v s="$2" 'BEGIN { printf "{\"label\":\"%s\",\"deliveries_per_sec\":%.3f,\"latency\":{\"count\":1000,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"p99_9_ms\":%.4f},\"ack_latency\":{\"count\":100,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"p99_9_ms\":%.4f}}", l, 50000 / s, 5 * s, 20 * s, 30 * s, 4 * s, 16 * s, 25 * s }'
}
mkdir -p "$out"
printf '{"kind":"run","run_id":"fake","rtmc":%s,"floor":%s,"failures":[]}\n' "$(phase rtmc "$s")" "$(phase floor "$j")" > "$out/report.json"
echo "fake loadgen wrote $out"
"#;

/// `cargo bench`: prints one gungraun JSON line whose instruction count is
/// the number in ./benches/benches/instructions.rs, +3% when built with the
/// test-only codec overhead.
const FAKE_CARGO_BENCH: &str = r#"
case "$*" in
  bench*)
    n=$(cat benches/benches/instructions.rs)
    case "$*" in *test-codec-overhead*) n=$((n * 103 / 100)) ;; esac
    echo "gungraun log line"
    printf '{"module_path":"instructions::codec::encode","id":"small","function_name":"encode","profiles":[{"summaries":{"total":{"summary":{"Callgrind":{"Ir":{"metrics":{"Left":%d}}}}}}}]}\n' "$n"
    printf '{"module_path":"instructions::codec::decode","id":"small","function_name":"decode","profiles":[{"summaries":{"total":{"summary":{"Callgrind":{"Ir":{"metrics":{"Left":254}}}}}}}]}\n'
    exit 0 ;;
esac
"#;

/// Records its arguments, directory and CARGO_TARGET_DIR, and "builds"
/// rtmc into $CARGO_TARGET_DIR/release/rtmc: "1.0" (the baseline's build in
/// its worktree, which also replaces release/loadgen), "1.0 candidate" (the
/// workspace build), "1.0 RTMC_TEST_BROADCAST_DELAY_US" (the build with the
/// delay feature: the real binary holds that name), likewise for the CPU
/// feature. Every build has the shared release build's selection.
const FAKE_CARGO_BUILD: &str = r#"
mkdir -p "$CARGO_TARGET_DIR/release"
rm -f "$CARGO_TARGET_DIR/release/rtmc"
case "$(pwd) $*" in
  */gate/baseline-*) echo 1.0 > "$CARGO_TARGET_DIR/release/rtmc"; echo baseline > "$CARGO_TARGET_DIR/release/loadgen" ;;
  *test-broadcast-delay*test-fanout-cpu*) echo "1.0 RTMC_TEST_BROADCAST_DELAY_US RTMC_TEST_FANOUT_CPU_PCT" > "$CARGO_TARGET_DIR/release/rtmc" ;;
  *test-broadcast-delay*) echo "1.0 RTMC_TEST_BROADCAST_DELAY_US" > "$CARGO_TARGET_DIR/release/rtmc" ;;
  *test-fanout-cpu*) echo "1.0 RTMC_TEST_FANOUT_CPU_PCT" > "$CARGO_TARGET_DIR/release/rtmc" ;;
  *--workspace*) echo "1.0 candidate" > "$CARGO_TARGET_DIR/release/rtmc" ;;
esac
chmod +x "$CARGO_TARGET_DIR/release/rtmc"
"#;

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    loadgen: PathBuf,
    profile: PathBuf,
    log: PathBuf,
    target: PathBuf,
}

fn script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let loadgen = root.join("fake-loadgen");
    script(&loadgen, FAKE_LOADGEN);
    let profile = root.join("profile.toml");
    std::fs::write(&profile, "name = \"fake\"\n").unwrap();
    for (name, scale) in [("rtmc-a", "1.0"), ("rtmc-b", "1.5"), ("rtmc-a2", "1.0")] {
        std::fs::write(root.join(name), scale).unwrap();
    }
    Setup {
        log: root.join("loadgen.log"),
        target: root.join("target"),
        _tmp: tmp,
        root,
        loadgen,
        profile,
    }
}

/// `gate` with `config`, the fake loadgen and profile, `--no-build`, the
/// setup's repo and target dir, output into `out`.
fn gate_command(s: &Setup, config: &Path, out: &Path) -> Command {
    let mut cmd = gate_command_building(s, config, out);
    cmd.arg("--no-build");
    cmd
}

/// `gate_command` without `--no-build`; the instruction check is skipped
/// (the tests of `instructions_*` turn it on).
fn gate_command_building(s: &Setup, config: &Path, out: &Path) -> Command {
    let mut cmd = gate_command_measuring(s, config, out);
    cmd.arg("--no-instructions");
    cmd
}

/// `gate` as `gate_command_building`, with the instruction check on.
fn gate_command_measuring(s: &Setup, config: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gate"));
    cmd.arg("--config")
        .arg(config)
        .arg("--repo")
        .arg(&s.root)
        .arg("--target-dir")
        .arg(&s.target)
        .arg("--loadgen")
        .arg(&s.loadgen)
        .arg("--profile")
        .arg(&s.profile)
        .arg("--out")
        .arg(out)
        .env("FAKE_LOADGEN_LOG", &s.log)
        .env_remove("RTMC_TEST_BROADCAST_DELAY_US");
    cmd
}

fn gate(s: &Setup, extra: &[&str]) -> (Output, PathBuf) {
    let out = s.root.join(format!("out-{}", extra.join("").len()));
    let o = gate_command(s, &baseline_toml(), &out)
        .args(extra)
        .output()
        .unwrap();
    (o, out)
}

/// `gate` with the fake rtmc-a as the baseline and `candidate` (a file in
/// the setup) as the candidate, plus `extra` flags.
fn ab(s: &Setup, candidate: &str, extra: &[&str]) -> (Output, PathBuf) {
    let (a, b) = (path(s, "rtmc-a"), path(s, candidate));
    let mut args = vec!["--baseline-rtmc", &a, "--candidate-rtmc", &b];
    args.extend_from_slice(extra);
    gate(s, &args)
}

fn path(s: &Setup, name: &str) -> String {
    s.root.join(name).display().to_string()
}

/// `git ARGS` in `root` as a test user; asserts success, returns stdout.
fn git_in(root: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["-c", "user.name=gate", "-c", "user.email=gate@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn init_repo(s: &Setup) {
    let git = |args: &[&str]| git_in(&s.root, args);
    git(&["init", "-q"]);
    std::fs::write(s.root.join(".gitignore"), "target/\nout-*/\n*.log\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "baseline"]);
    // The landed main a pin must be on (the pin check).
    git(&["checkout", "-q", "-B", "main"]);
}

#[test]
fn rounds_interleave_abba_with_each_sides_rtmc_and_the_files_land() {
    let s = setup();
    let (o, out) = ab(&s, "rtmc-b", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("RESULT: REGRESSION"), "{}", text(&o));
    let log = std::fs::read_to_string(&s.log).unwrap();
    let rounds: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        rounds,
        [
            "warmup/round-01",
            "baseline/pair-01",
            "candidate/pair-01",
            "candidate/pair-02",
            "baseline/pair-02",
            "baseline/pair-03",
            "candidate/pair-03"
        ]
    );
    let staged = s.target.join("gate/rtmc-candidate");
    for line in log.lines() {
        // The warm-up round runs the baseline.
        let bin = if line.starts_with("baseline") || line.starts_with("warmup") {
            path(&s, "rtmc-a")
        } else {
            staged.display().to_string()
        };
        assert!(line.contains(&format!("RTMC_BIN={bin} ")), "{line}");
        assert!(line.ends_with("DELAY=none"), "{line}");
    }
    assert_gate_files(&out);
    let round = out.join("rounds/candidate/pair-02");
    assert!(std::fs::read_to_string(round.join("loadgen.log"))
        .unwrap()
        .contains("fake loadgen wrote"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(round.join("round.json")).unwrap()).unwrap();
    assert_eq!(meta["order"], 2);
    assert_eq!(meta["side"], "candidate");
    assert_eq!(meta["loadgen_exit_code"], 0);
    // The saved rounds re-judge to the same verdict.
    let o = Command::new(env!("CARGO_BIN_EXE_gate"))
        .arg("--config")
        .arg(baseline_toml())
        .arg("--compare")
        .arg(out.join("rounds/baseline"))
        .arg(out.join("rounds/candidate"))
        .arg("--out")
        .arg(s.root.join("rejudged"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let md = std::fs::read_to_string(s.root.join("rejudged/gate-report.md")).unwrap();
    assert!(md.contains("in the order ABBAAB"), "{md}");
}

#[test]
fn an_injected_delay_reaches_only_the_candidate_and_is_caught() {
    let s = setup();
    let (o, _) = ab(&s, "rtmc-a2", &["--inject-delay-us", "400", "--pairs", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let log = std::fs::read_to_string(&s.log).unwrap();
    // A warm-up round, then 4 pairs.
    assert_eq!(log.lines().count(), 9);
    for line in log.lines() {
        let expected = if line.starts_with("candidate") {
            "DELAY=400"
        } else {
            "DELAY=none"
        };
        assert!(line.ends_with(expected), "{line}");
    }
}

#[test]
fn the_same_binary_on_both_sides_passes_and_aa_reports_no_false_alarm() {
    let s = setup();
    let (o, _) = ab(&s, "rtmc-a2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (o, out) = gate(
        &s,
        &[
            "--baseline-rtmc",
            &path(&s, "rtmc-a"),
            "--aa",
            "--repeats",
            "2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("false alarms under the current thresholds: 0"));
    for f in ["aa.json", "aa-report.md", "aa-thresholds.toml"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert!(out.join("aa-02/gate-report.md").is_file());
    // The suggested table drops into baseline.toml as it is.
    let table = std::fs::read_to_string(out.join("aa-thresholds.toml")).unwrap();
    let file = std::fs::read_to_string(baseline_toml()).unwrap();
    let head = &file[..file.find("[thresholds]").unwrap()];
    let cfg = rtmc_ci::baseline::BaselineConfig::parse(&format!("{head}{table}")).unwrap();
    assert!(cfg
        .thresholds
        .measured_by
        .starts_with("gate --aa --repeats 2"));
    // Only rtmc-a ran: 2 repeats × (a warm-up round + 6 rounds).
    let log = std::fs::read_to_string(&s.log).unwrap();
    let aa: Vec<&str> = log.lines().skip(7).collect();
    assert_eq!(aa.len(), 14);
    assert!(aa
        .iter()
        .all(|l| l.contains(&format!("RTMC_BIN={} ", path(&s, "rtmc-a")))));
}

#[test]
fn a_second_gate_on_a_busy_target_directory_is_refused() {
    let s = setup();
    let held = rtmc_ci::lock::lock_target(&s.target).unwrap();
    let (o, _) = ab(&s, "rtmc-a", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("another gate is using") && text(&o).contains("--target-dir"),
        "{}",
        text(&o)
    );
    assert!(
        !s.log.exists() || std::fs::read_to_string(&s.log).unwrap().is_empty(),
        "a refused gate ran loadgen"
    );
    drop(held);
    let (o, _) = ab(&s, "rtmc-a", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_loadgen_that_cannot_run_is_an_error() {
    let s = setup();
    let o = gate_command(&s, &baseline_toml(), &s.root.join("out"))
        .args(["--baseline-rtmc", &path(&s, "rtmc-a")])
        .args(["--candidate-rtmc", &path(&s, "rtmc-b")])
        .env("FAKE_LOADGEN_EXIT", "2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("fake loadgen: cannot run"),
        "{}",
        text(&o)
    );
}

/// A git repository with a fake `cargo` on `PATH` and a baseline file
/// pinning its HEAD: the build paths of the gate, without a compiler.
struct BuildSetup {
    config: PathBuf,
    sha: String,
    cargo_log: PathBuf,
    path: String,
}

impl BuildSetup {
    fn new(s: &Setup) -> Self {
        init_repo(s);
        let bin = s.root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        script(
            &bin.join("cargo"),
            &format!("#!/bin/sh\necho \"cargo $* | cwd=$(pwd) | CARGO_TARGET_DIR=$CARGO_TARGET_DIR\" >> \"$FAKE_CARGO_LOG\"{FAKE_CARGO_BENCH}{FAKE_CARGO_BUILD}"),
        );
        // The instruction check asks these for their version.
        for tool in ["valgrind", "gungraun-runner"] {
            script(&bin.join(tool), "#!/bin/sh\necho fake\n");
        }
        let config = s.root.join("baseline.toml");
        let shipped = std::fs::read_to_string(baseline_toml()).unwrap();
        let commit_line = shipped
            .lines()
            .find(|l| l.starts_with("commit = "))
            .unwrap();
        std::fs::write(&config, shipped.replace(commit_line, "commit = \"HEAD\"")).unwrap();
        let sha = String::from_utf8(
            Command::new("git")
                .arg("-C")
                .arg(&s.root)
                .args(["rev-parse", "HEAD"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned();
        // The candidate changes rtmc's sources (an untracked file counts; it
        // does not make the tree dirty for --update-baseline), so the
        // baseline is built; `same_sources` takes the change back.
        std::fs::create_dir_all(s.root.join("system")).unwrap();
        std::fs::write(s.root.join("system/candidate.rs"), "// changed\n").unwrap();
        BuildSetup {
            config,
            sha,
            cargo_log: s.root.join("cargo.log"),
            path: format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        }
    }

    /// Runs `cmd` with the fake cargo first on `PATH`.
    fn run(&self, cmd: &mut Command) -> Output {
        cmd.env("FAKE_CARGO_LOG", &self.cargo_log)
            .env("PATH", &self.path)
            .output()
            .unwrap()
    }

    /// Makes the work tree's sources the baseline commit's again.
    fn same_sources(&self, s: &Setup) {
        std::fs::remove_dir_all(s.root.join("system")).unwrap();
    }

    fn cargo_calls(&self) -> String {
        std::fs::read_to_string(&self.cargo_log).unwrap_or_default()
    }
}

#[test]
fn the_baseline_is_built_once_in_a_worktree_and_the_candidate_binary_restored() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let sha = &b.sha;
    // The candidate's rtmc where cargo puts it.
    let release = s.target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    script(&release.join("rtmc"), "1.5");
    script(&release.join("loadgen"), "candidate");
    let run = || b.run(&mut gate_command(&s, &b.config, &s.root.join("out")));
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let cargo = b.cargo_calls();
    let worktree = s.target.join(format!("gate/baseline-{sha}"));
    assert_eq!(
        cargo.trim(),
        format!(
            "cargo build --locked --release --workspace --bins | cwd={} | CARGO_TARGET_DIR={}",
            worktree.display(),
            s.target.display()
        )
    );
    assert!(worktree.join(".gitignore").is_file(), "a checkout of {sha}");
    let kept = s.target.join(format!("gate/rtmc-{sha}"));
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), "1.0");
    // target/release/rtmc (and every other binary the baseline's
    // workspace build replaced) is the candidate's again.
    assert_eq!(
        std::fs::read_to_string(release.join("rtmc")).unwrap(),
        "1.5"
    );
    assert_eq!(
        std::fs::read_to_string(release.join("loadgen")).unwrap(),
        "candidate"
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log
        .lines()
        .filter(|l| l.starts_with("baseline"))
        .all(|l| l.contains(&format!("RTMC_BIN={} ", kept.display()))));
    // A second run reuses the kept binary: cargo is not called again.
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(b.cargo_calls(), cargo);
}

#[test]
fn identical_sources_need_no_baseline_build_and_no_instruction_run() {
    let s = setup();
    let b = BuildSetup::new(&s);
    b.same_sources(&s);
    // A markdown file under a source path is read by no build: still identical.
    std::fs::create_dir_all(s.root.join("system")).unwrap();
    std::fs::write(s.root.join("system/NOTES.md"), "docs only").unwrap();
    let release = s.target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("rtmc"), "1.5").unwrap();
    let mut cmd = gate_command_measuring(&s, &b.config, &s.root.join("out"));
    let o = b.run(cmd.arg("--no-build"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("one rtmc serves both sides"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("not measured"), "{}", text(&o));
    // Neither a baseline build nor an instruction bench ran.
    assert_eq!(b.cargo_calls(), "");
    let same = s.target.join("gate/rtmc-baseline-same-sources");
    assert_eq!(std::fs::read_to_string(&same).unwrap(), "1.5");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log
        .lines()
        .filter(|l| l.starts_with("baseline"))
        .all(|l| l.contains(&format!("RTMC_BIN={} ", same.display()))));
}

/// A candidate given by path (here a test-only feature's build) with the
/// sources identical: the baseline side runs the tree's own release rtmc,
/// not the given binary.
#[test]
fn a_given_candidate_with_identical_sources_is_compared_with_the_trees_own_rtmc() {
    let s = setup();
    let b = BuildSetup::new(&s);
    b.same_sources(&s);
    let release = s.target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("rtmc"), "1.0").unwrap();
    let given = s.root.join("rtmc-given");
    std::fs::write(&given, "1.5").unwrap();
    let mut cmd = gate_command_measuring(&s, &b.config, &s.root.join("out"));
    let o = b.run(cmd.arg("--no-build").arg("--candidate-rtmc").arg(&given));
    assert_eq!(o.status.code(), Some(1), "1.5 against 1.0: {}", text(&o));
    let same = s.target.join("gate/rtmc-baseline-same-sources");
    assert_eq!(std::fs::read_to_string(&same).unwrap(), "1.0");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log
        .lines()
        .filter(|l| l.starts_with("baseline"))
        .all(|l| l.contains(&format!("RTMC_BIN={} ", same.display()))));
    assert!(log
        .lines()
        .filter(|l| l.starts_with("candidate"))
        .any(|l| !l.contains(&format!("RTMC_BIN={} ", same.display()))));
}

#[test]
fn an_injected_delay_builds_the_candidate_with_the_feature_and_restores_release_rtmc() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let out = s.root.join("out");
    let o = b.run(gate_command_building(&s, &b.config, &out).args(["--inject-delay-us", "2000"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("RESULT: REGRESSION"), "{}", text(&o));
    let calls: Vec<String> = b.cargo_calls().lines().map(str::to_owned).collect();
    let root = s.root.display();
    let target = s.target.display();
    let worktree = s.target.join(format!("gate/baseline-{}", b.sha));
    assert_eq!(
        calls,
        [
            format!("cargo build --locked --release --workspace --bins | cwd={root} | CARGO_TARGET_DIR={target}"),
            format!(
                "cargo build --locked --release --workspace --bins | cwd={} | CARGO_TARGET_DIR={target}",
                worktree.display()
            ),
            // The shared build's selection: only workspace crates rebuild.
            format!("cargo build --locked --release --workspace --bins --features rtmc-system/test-broadcast-delay | cwd={root} | CARGO_TARGET_DIR={target}"),
        ]
    );
    let delayed = s
        .target
        .join(format!("gate/rtmc-candidate-broadcast-delay-{}", b.sha));
    assert_eq!(
        std::fs::read_to_string(&delayed).unwrap().trim(),
        "1.0 RTMC_TEST_BROADCAST_DELAY_US"
    );
    // The release binary is the candidate's workspace build again.
    assert_eq!(
        std::fs::read_to_string(s.target.join("release/rtmc"))
            .unwrap()
            .trim(),
        "1.0 candidate"
    );
    let kept = s.target.join(format!("gate/rtmc-{}", b.sha));
    let log = std::fs::read_to_string(&s.log).unwrap();
    // One discarded warm-up round of the baseline, then three pairs.
    assert_eq!(log.lines().count(), 7);
    assert!(log.starts_with("warmup/round-01 "), "{log}");
    for line in log.lines() {
        let (bin, delay) = if line.starts_with("candidate") {
            (&delayed, "DELAY=2000")
        } else {
            (&kept, "DELAY=none")
        };
        assert!(
            line.contains(&format!("RTMC_BIN={} ", bin.display())),
            "{line}"
        );
        assert!(line.ends_with(delay), "{line}");
    }
    let md = std::fs::read_to_string(out.join("gate-report.md")).unwrap();
    assert!(md.contains("RTMC_TEST_BROADCAST_DELAY_US=2000"), "{md}");
}

#[test]
fn an_injected_delay_without_a_built_delay_binary_is_an_error() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let release = s.target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::write(release.join("rtmc"), "1.0").unwrap();
    let args = [
        "--baseline-rtmc",
        &path(&s, "rtmc-a"),
        "--inject-delay-us",
        "500",
    ];
    // --no-build and nothing kept: the gate says how to get it.
    let o = b.run(gate_command(&s, &b.config, &s.root.join("out")).args(args));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("rtmc-candidate-broadcast-delay-"),
        "{}",
        text(&o)
    );
    // A kept binary without the feature would ignore the variable.
    let kept = s
        .target
        .join(format!("gate/rtmc-candidate-broadcast-delay-{}", b.sha));
    std::fs::write(&kept, "1.0").unwrap();
    let o = b.run(gate_command(&s, &b.config, &s.root.join("out")).args(args));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("was not built with rtmc-system/test-broadcast-delay"),
        "{}",
        text(&o)
    );
    assert!(b.cargo_calls().is_empty());
}

/// A repository whose instruction "bench" counts `count` at HEAD.
fn bench_repo(count: u64) -> (Setup, BuildSetup) {
    let s = setup();
    let file = s.root.join("benches/benches/instructions.rs");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, count.to_string()).unwrap();
    let b = BuildSetup::new(&s);
    (s, b)
}

fn set_count(s: &Setup, count: u64) {
    std::fs::write(
        s.root.join("benches/benches/instructions.rs"),
        count.to_string(),
    )
    .unwrap();
}

#[test]
fn instructions_only_compares_both_sides_built_at_one_path() {
    let (s, b) = bench_repo(1000);
    let out = s.root.join("out-i");
    let run = |extra: &[&str]| {
        b.run(
            gate_command_measuring(&s, &b.config, &out)
                .arg("--instructions-only")
                .args(extra),
        )
    };
    // Unchanged code passes.
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("RESULT: PASS"), "{}", text(&o));
    let calls = b.cargo_calls();
    let src = s.target.join("gate/instructions-src");
    let benches: Vec<&str> = calls
        .lines()
        .filter(|l| l.starts_with("cargo bench"))
        .collect();
    assert_eq!(benches.len(), 2, "{calls}");
    for line in &benches {
        assert!(
            line.contains(&format!("| cwd={} |", src.display())),
            "both sides at one path: {line}"
        );
        assert!(
            line.contains("--config profile.bench.package.rtmc-system.codegen-units=1"),
            "{line}"
        );
    }
    assert!(!calls.contains("cargo build"), "no rtmc build: {calls}");
    // +2.9% in the work tree (uncommitted) is beyond the 2% threshold.
    set_count(&s, 1029);
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("REGRESSION — instructions codec::encode::small"),
        "{t}"
    );
    assert!(t.contains("+2.9%"), "{t}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gate.json")).unwrap()).unwrap();
    assert_eq!(json["instructions"]["benches"][0]["verdict"], "regression");
    assert_eq!(json["instructions"]["benches"][1]["verdict"], "ok");
    assert_eq!(json["verdict"], "regression");
    let md = std::fs::read_to_string(out.join("gate-report.md")).unwrap();
    assert!(md.contains("### Instruction counts"), "{md}");
    assert!(md.contains("**REGRESSION**"), "{md}");
    // +1.5% is within it.
    set_count(&s, 1015);
    assert_eq!(run(&[]).status.code(), Some(0));
    // The test-only codec overhead on unchanged code is caught.
    set_count(&s, 1000);
    let o = run(&["--bench-features", "rtmc-system/test-codec-overhead"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        b.cargo_calls()
            .lines()
            .last()
            .unwrap()
            .contains("--features rtmc-system/test-codec-overhead"),
        "only the candidate's bench build gets the feature"
    );
}

#[test]
fn an_instruction_regression_fails_a_full_run_whose_latency_passed() {
    let (s, b) = bench_repo(1000);
    set_count(&s, 1100);
    let out = s.root.join("out-full");
    let o = b.run(
        gate_command_measuring(&s, &b.config, &out)
            .arg("--no-build")
            .args(["--baseline-rtmc", &path(&s, "rtmc-a")])
            .args(["--candidate-rtmc", &path(&s, "rtmc-a2")]),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("publish→receive p50"), "the latency table: {t}");
    assert!(t.contains("instruction counts"), "{t}");
    assert!(
        t.contains("REGRESSION — instructions codec::encode::small"),
        "{t}"
    );
    assert_gate_files(&out);
}

#[test]
fn update_baseline_pins_head_and_stores_its_histograms() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let o = b.run(
        gate_command(&s, &b.config, &s.root.join("out-u"))
            .args(["--update-baseline", "--pairs", "2"])
            .args(["--candidate-rtmc", &path(&s, "rtmc-a")]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert!(
        config.contains(&format!("\ncommit = \"{}\"\n", b.sha)),
        "{config}"
    );
    assert!(config.contains("[thresholds]"), "the rest is kept");
    let stored = s.root.join("ci/gate/baseline");
    for k in ["round-01", "round-02"] {
        assert!(stored.join(k).join("report.json").is_file(), "{k}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stored.join("baseline.json")).unwrap())
            .unwrap();
    assert_eq!(summary["commit"], b.sha.as_str());
    assert_eq!(summary["rounds"].as_array().unwrap().len(), 2);
    // No machine path in the committed summary: the stored copies' names.
    assert_eq!(summary["rounds"][1]["dir"], "round-02");
    assert!(
        !summary.to_string().contains(&*s.root.to_string_lossy()),
        "{summary}"
    );
    // Only the pinned commit's rtmc ran, with no baseline build.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(log.lines().count(), 2);
    assert!(b.cargo_calls().is_empty());
    // A dirty work tree cannot be pinned.
    std::fs::write(s.root.join("profile.toml"), "name = \"changed\"\n").unwrap();
    let o = b.run(
        gate_command(&s, &b.config, &s.root.join("out-u2"))
            .args(["--update-baseline", "--pairs", "1"])
            .args(["--candidate-rtmc", &path(&s, "rtmc-a")]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("uncommitted changes"), "{}", text(&o));
}

#[test]
fn update_baseline_refuses_a_head_that_is_not_on_the_landed_main() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let git = |args: &[&str]| git_in(&s.root, args);
    git(&["checkout", "-q", "-b", "work"]);
    git(&["add", "system"]);
    git(&["commit", "-q", "-m", "the submission's own change"]);
    let o = b.run(
        gate_command(&s, &b.config, &s.root.join("out-u"))
            .args(["--update-baseline", "--pairs", "1"])
            .args(["--candidate-rtmc", &path(&s, "rtmc-a")]),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not on the landed main"), "{}", text(&o));
    let config = std::fs::read_to_string(&b.config).unwrap();
    assert!(config.contains("commit = \"HEAD\""), "the pin is unchanged");
}

#[test]
fn a_pin_that_is_not_an_ancestor_of_head_stops_the_gate_before_any_round() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let git = |args: &[&str]| git_in(&s.root, args);
    git(&["checkout", "-q", "-b", "elsewhere"]);
    git(&["add", "system"]);
    git(&["commit", "-q", "-m", "a line HEAD does not contain"]);
    let stranger = git(&["rev-parse", "HEAD"]);
    git(&["checkout", "-q", "main"]);
    let config = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(
        &b.config,
        config.replace("commit = \"HEAD\"", &format!("commit = \"{stranger}\"")),
    )
    .unwrap();
    let o = b.run(&mut gate_command(&s, &b.config, &s.root.join("out")));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not an ancestor of HEAD"), "{}", text(&o));
    assert!(!s.log.exists(), "no round ran");
}

#[test]
fn trend_measures_each_landed_change_once_built_in_interleaved_passes() {
    let s = setup();
    let b = BuildSetup::new(&s);
    let git = |args: &[&str]| git_in(&s.root, args);
    git(&["add", "system"]);
    git(&["commit", "-q", "-m", "a measured change"]);
    std::fs::write(s.root.join("notes.md"), "not measured\n").unwrap();
    git(&["add", "notes.md"]);
    git(&["commit", "-q", "-m", "docs only"]);
    std::fs::write(s.root.join("system/candidate.rs"), "// again\n").unwrap();
    git(&["commit", "-q", "-am", "another measured change"]);
    let out = s.root.join("out-trend");
    let o = b.run(
        gate_command(&s, &b.config, &out)
            .args(["--landed-ref", "main"])
            .args(["trend", "--commits", "5", "--rounds", "2"]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Two commits changed system/ (the root commit has no predecessor and
    // the docs commit changed nothing measured): 2 builds, 2 × 2 rounds,
    // the second pass in reverse order.
    let builds = b.cargo_calls();
    assert_eq!(builds.lines().count(), 2, "{builds}");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    let md = std::fs::read_to_string(out.join("trend.md")).unwrap();
    assert!(md.contains("a measured change"), "{md}");
    assert!(md.contains("another measured change"), "{md}");
    assert!(!md.contains("docs only"), "{md}");
    assert!(out.join("trend.svg").is_file());
    assert!(out.join("trend.json").is_file());
}
