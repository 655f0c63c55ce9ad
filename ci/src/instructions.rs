//! The instruction-count part of the gate: callgrind's instruction counts
//! (gungraun, `benches/benches/instructions.rs`) of the CPU-bound hot paths,
//! baseline against candidate, at a fixed small threshold. Counts do not
//! move with the machine's load, so one run per side decides (design.md §9,
//! rule 7).
//!
//! Reproducible across rebuilds: both sides are built from the SAME source
//! directory (`<target>/gate/instructions-src`, filled first with the
//! baseline commit, then with the candidate's files), in the candidate's
//! target directory, with `codegen-units = 1` for the workspace crates on the
//! measured path. Same path ⇒ the same package ids and symbol names, so the
//! only difference between the two binaries is the code; one codegen unit
//! removes the partitioning that moved counts by a few percent when
//! unrelated code changed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// `[instructions]` of `ci/baseline.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionConfig {
    /// A bench whose count grows by more than this (percent of the
    /// baseline's) fails the gate.
    #[serde(default = "default_threshold_pct")]
    pub threshold_pct: f64,
}

impl Default for InstructionConfig {
    fn default() -> Self {
        Self {
            threshold_pct: default_threshold_pct(),
        }
    }
}

fn default_threshold_pct() -> f64 {
    2.0
}

/// The workspace crates whose code the benches measure: built with one
/// codegen unit on both sides (`cargo --config`, so the baseline's own
/// Cargo.toml needs no change).
pub const ONE_CGU_PACKAGES: [&str; 3] = ["rtmc-system", "rtmc-loadgen", "rtmc-benches"];

/// The bench file, relative to the repository root.
pub const BENCH_FILE: &str = "benches/benches/instructions.rs";

/// A failure measuring instruction counts.
#[derive(Debug, thiserror::Error)]
pub enum InstructionError {
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Missing(String),
    #[error("gungraun output: {0}")]
    Parse(String),
    #[error("the instruction benches need valgrind and gungraun-runner on PATH ({0}); `RTMC_BENCH_TOOLS=1 ci/setup.sh` installs them")]
    Tools(String),
}

/// One bench's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchCount {
    /// `group::function::case`, e.g. `codec::encode::small`.
    pub bench: String,
    /// callgrind's `Ir`.
    pub instructions: u64,
}

/// Reads gungraun's `--output-format=json` lines (one object per bench);
/// other lines are ignored.
pub fn parse_gungraun_json(text: &str) -> Result<Vec<BenchCount>, InstructionError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| InstructionError::Parse(format!("{e}: {line}")))?;
        let module = v["module_path"].as_str().unwrap_or_default();
        let module = module.strip_prefix("instructions::").unwrap_or(module);
        let id = v["id"].as_str().unwrap_or_default();
        let ir = v["profiles"][0]["summaries"]["total"]["summary"]["Callgrind"]["Ir"]["metrics"]
            ["Left"]
            .as_u64()
            .or_else(|| {
                v["profiles"][0]["data"]["total"]["metrics"]["Ir"]["values"]["new"].as_u64()
            })
            .or_else(|| find_ir(&v))
            .ok_or_else(|| InstructionError::Parse(format!("no Ir in {line}")))?;
        // module_path is `<file>::<group>::<function>`; id is the case.
        let name = [module, id]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("::");
        out.push(BenchCount {
            bench: name,
            instructions: ir,
        });
    }
    if out.is_empty() {
        return Err(InstructionError::Parse(
            "no bench results (no JSON lines) in gungraun's output".into(),
        ));
    }
    Ok(out)
}

/// The first integer found under a key `Ir` whose value holds a `new` or
/// `Left` field (gungraun's summary shape has moved between versions).
fn find_ir(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(ir) = map.get("Ir") {
                if let Some(n) = first_int(ir) {
                    return Some(n);
                }
            }
            map.values().find_map(find_ir)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_ir),
        _ => None,
    }
}

fn first_int(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::Object(map) => ["new", "Left", "Int", "metrics", "values"]
            .iter()
            .filter_map(|k| map.get(*k))
            .find_map(first_int),
        _ => None,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InstructionError {
    let path = path.to_owned();
    move |source| InstructionError::Io { path, source }
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, InstructionError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| InstructionError::Command {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(InstructionError::Command {
            command,
            message: format!(
                "{}:\n{}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    Ok(out.stdout)
}

/// Checks valgrind and gungraun-runner answer.
pub fn check_tools() -> Result<(), InstructionError> {
    for tool in ["valgrind", "gungraun-runner"] {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
            .ok_or_else(|| InstructionError::Tools(format!("{tool} not found")))?;
    }
    Ok(())
}

/// Empties `dir` and fills it with the tree of commit `sha` (`git archive`).
pub fn fill_from_commit(repo: &Path, sha: &str, dir: &Path) -> Result<(), InstructionError> {
    reset_dir(dir)?;
    let tar = run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", sha]))?;
    let mut child = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(io_err(dir))?;
    {
        use std::io::Write;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| InstructionError::Command {
                command: "tar -x".into(),
                message: "no stdin".into(),
            })?;
        stdin.write_all(&tar).map_err(io_err(dir))?;
    }
    let status = child.wait().map_err(io_err(dir))?;
    if !status.success() {
        return Err(InstructionError::Command {
            command: format!("tar -x -C {}", dir.display()),
            message: status.to_string(),
        });
    }
    Ok(())
}

/// Empties `dir` and copies the candidate's files into it: every tracked
/// file as it is in the work tree (uncommitted changes included) and every
/// untracked file git does not ignore.
pub fn fill_from_work_tree(repo: &Path, dir: &Path) -> Result<(), InstructionError> {
    reset_dir(dir)?;
    let list = run(Command::new("git").arg("-C").arg(repo).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]))?;
    for rel in list.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel =
            Path::new(std::str::from_utf8(rel).map_err(|e| {
                InstructionError::Parse(format!("a file name that is not UTF-8: {e}"))
            })?);
        let from = repo.join(rel);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dir.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::copy(&from, &to).map_err(io_err(&from))?;
    }
    Ok(())
}

fn reset_dir(dir: &Path) -> Result<(), InstructionError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))
}

/// The cargo command that builds and runs the instruction benches in `src`
/// (`features` for the candidate's test-only switches).
pub fn bench_command(src: &Path, target_dir: &Path, features: &[String]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(src).env("CARGO_TARGET_DIR", target_dir);
    cmd.arg("bench").arg("--locked");
    for p in ONE_CGU_PACKAGES {
        cmd.arg("--config")
            .arg(format!("profile.bench.package.{p}.codegen-units=1"));
    }
    cmd.args(["-p", "rtmc-benches", "--bench", "instructions"]);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd.args(["--", "--output-format=json"]);
    cmd
}

/// Builds and runs the instruction benches of the sources in `src`.
pub fn measure(
    src: &Path,
    target_dir: &Path,
    features: &[String],
) -> Result<Vec<BenchCount>, InstructionError> {
    let stdout = run(&mut bench_command(src, target_dir, features))?;
    parse_gungraun_json(&String::from_utf8_lossy(&stdout))
}

/// One bench, both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchComparison {
    pub bench: String,
    pub baseline: Option<u64>,
    pub candidate: Option<u64>,
    /// candidate / baseline.
    pub ratio: Option<f64>,
    pub verdict: BenchVerdict,
}

/// A bench's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchVerdict {
    Ok,
    Regression,
    Improved,
    /// Only the candidate has it.
    New,
    /// Only the baseline has it.
    Gone,
}

impl BenchVerdict {
    pub fn word(self) -> &'static str {
        match self {
            BenchVerdict::Ok => "ok",
            BenchVerdict::Regression => "REGRESSION",
            BenchVerdict::Improved => "improved",
            BenchVerdict::New => "new",
            BenchVerdict::Gone => "gone",
        }
    }
}

/// The instruction part of a gate report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionReport {
    pub threshold_pct: f64,
    /// Features the candidate's benches were built with (test-only switches).
    #[serde(default)]
    pub candidate_features: Vec<String>,
    pub benches: Vec<BenchComparison>,
    /// Why nothing was measured (the benches' sources equal the baseline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl InstructionReport {
    pub fn regressed(&self) -> Vec<&BenchComparison> {
        self.benches
            .iter()
            .filter(|b| b.verdict == BenchVerdict::Regression)
            .collect()
    }
}

/// Compares the two sides bench by bench, in the baseline's order (new
/// benches last).
pub fn compare(
    baseline: &[BenchCount],
    candidate: &[BenchCount],
    threshold_pct: f64,
) -> Vec<BenchComparison> {
    let cand: BTreeMap<&str, u64> = candidate
        .iter()
        .map(|c| (c.bench.as_str(), c.instructions))
        .collect();
    let t = threshold_pct / 100.0;
    let mut out: Vec<BenchComparison> = baseline
        .iter()
        .map(|b| {
            let c = cand.get(b.bench.as_str()).copied();
            let ratio = c.map(|c| c as f64 / b.instructions.max(1) as f64);
            let verdict = match ratio {
                None => BenchVerdict::Gone,
                Some(r) if r > 1.0 + t => BenchVerdict::Regression,
                Some(r) if r < 1.0 - t => BenchVerdict::Improved,
                Some(_) => BenchVerdict::Ok,
            };
            BenchComparison {
                bench: b.bench.clone(),
                baseline: Some(b.instructions),
                candidate: c,
                ratio,
                verdict,
            }
        })
        .collect();
    for c in candidate {
        if !baseline.iter().any(|b| b.bench == c.bench) {
            out.push(BenchComparison {
                bench: c.bench.clone(),
                baseline: None,
                candidate: Some(c.instructions),
                ratio: None,
                verdict: BenchVerdict::New,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(bench: &str, instructions: u64) -> BenchCount {
        BenchCount {
            bench: bench.into(),
            instructions,
        }
    }

    #[test]
    fn a_count_beyond_the_threshold_fails_and_one_within_passes() {
        let a = [
            count("codec::encode::small", 1000),
            count("x", 1000),
            count("gone", 5),
        ];
        let b = [
            count("codec::encode::small", 1030),
            count("x", 1019),
            count("new", 7),
        ];
        let c = compare(&a, &b, 2.0);
        let verdicts: Vec<(&str, BenchVerdict)> =
            c.iter().map(|b| (b.bench.as_str(), b.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                ("codec::encode::small", BenchVerdict::Regression),
                ("x", BenchVerdict::Ok),
                ("gone", BenchVerdict::Gone),
                ("new", BenchVerdict::New),
            ]
        );
        let improved = compare(&[count("x", 1000)], &[count("x", 970)], 2.0);
        assert_eq!(improved[0].verdict, BenchVerdict::Improved);
    }

    #[test]
    fn gungraun_json_lines_are_read() {
        let text = r#"some log line
{"module_path":"instructions::codec::encode","id":"small","function_name":"encode","profiles":[{"tool":"Callgrind","summaries":{"total":{"summary":{"Callgrind":{"Ir":{"metrics":{"Left":536},"diffs":null}}}}}}]}
{"module_path":"instructions::codec::decode","id":"large","function_name":"decode","profiles":[{"data":{"total":{"metrics":{"Ir":{"values":{"new":254}}}}}}]}
"#;
        let counts = parse_gungraun_json(text).unwrap();
        assert_eq!(
            counts,
            [
                count("codec::encode::small", 536),
                count("codec::decode::large", 254)
            ]
        );
        assert!(parse_gungraun_json("no json here").is_err());
    }
}
