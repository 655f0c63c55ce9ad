//! The baseline: the pinned commit and the gate's settings in
//! `ci/baseline.toml` (profile, pairs, bootstrap, thresholds and how they
//! were measured), and the baseline's `rtmc` binary — built once from a git
//! worktree of that commit into the candidate's target directory (so the
//! dependencies are compiled once for both) and kept aside as
//! `target/gate/rtmc-<sha>`.
//!
//! No baseline *numbers* are stored: every run measures the baseline again,
//! interleaved with the candidate on the same machine (design.md §9, rule 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::compare::BootstrapConfig;
use crate::instructions::InstructionConfig;
use crate::metric::Metric;
use crate::verdict::Rule;

/// `ci/baseline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// The pinned baseline commit (a full sha, or anything `git rev-parse`
    /// resolves).
    pub commit: String,
    /// The loadgen profile every round runs, relative to the repository root.
    #[serde(default = "default_profile")]
    pub profile: PathBuf,
    /// A/B pairs per gate run (rounds = 2 × pairs).
    #[serde(default = "default_pairs")]
    pub pairs: usize,
    /// Share of pairs that must move in the bad direction before a metric fails.
    #[serde(default = "default_agreement")]
    pub agreement_frac: f64,
    /// Rounds run before the A/B schedule and discarded: the first round of
    /// a job runs cold (page cache, containers, CPU frequency).
    #[serde(default)]
    pub warmup_rounds: usize,
    #[serde(default)]
    pub bootstrap: BootstrapConfig,
    pub thresholds: Thresholds,
    /// The instruction-count check (`[instructions]`).
    #[serde(default)]
    pub instructions: InstructionConfig,
}

/// `[thresholds]`: the minimum effect per metric and how it was measured.
/// `gate --aa` prints a replacement for the whole table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// The command, date and load that measured them.
    #[serde(default)]
    pub measured_by: String,
    /// Keys (`<metric>_pct`) whose value is a placeholder, not yet set from
    /// A/A runs: reported as such.
    #[serde(default)]
    pub placeholder: Vec<String>,
    /// `<metric key>_pct = percent of the baseline's median`.
    #[serde(flatten)]
    pub pct: BTreeMap<String, f64>,
}

/// The key of `metric`'s threshold in `[thresholds]`.
pub fn threshold_key(metric: Metric) -> String {
    format!("{}_pct", metric.key())
}

fn default_profile() -> PathBuf {
    PathBuf::from("ci/gate/short.toml")
}

fn default_pairs() -> usize {
    3
}

fn default_agreement() -> f64 {
    0.8
}

/// Failure reading the baseline or making its binary.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

impl BaselineConfig {
    /// Reads and checks `path`: every metric needs a threshold.
    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| BaselineError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the TOML text and checks it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: BaselineConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for m in Metric::ALL {
            let key = threshold_key(m);
            match cfg.thresholds.pct.get(&key) {
                Some(t) if t.is_finite() && *t >= 0.0 => {}
                Some(t) => return Err(format!("thresholds.{key} = {t} is not ≥ 0")),
                None => return Err(format!("thresholds.{key} is missing")),
            }
        }
        if let Some(k) = cfg
            .thresholds
            .pct
            .keys()
            .find(|k| !Metric::ALL.iter().any(|m| threshold_key(*m) == k.as_str()))
        {
            return Err(format!("thresholds.{k} is not a metric the gate judges"));
        }
        if cfg.pairs == 0 {
            return Err("pairs must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&cfg.agreement_frac) {
            return Err("agreement_frac must lie in 0..=1".into());
        }
        let t = cfg.instructions.threshold_pct;
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!("instructions.threshold_pct = {t} is not ≥ 0"));
        }
        let c = cfg.bootstrap.confidence;
        if !(c > 0.0 && c < 1.0) || cfg.bootstrap.resamples < 100 {
            return Err("bootstrap needs 0 < confidence < 1 and resamples ≥ 100".into());
        }
        Ok(cfg)
    }

    /// The rule for `metric` (its threshold is checked present by `parse`).
    pub fn rule(&self, metric: Metric) -> Rule {
        Rule {
            threshold_frac: self
                .thresholds
                .pct
                .get(&threshold_key(metric))
                .copied()
                .unwrap_or(0.0)
                / 100.0,
            agreement_frac: self.agreement_frac,
            placeholder: self.thresholds.placeholder.contains(&threshold_key(metric)),
        }
    }
}

fn run(cmd: &mut Command) -> Result<String, BaselineError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| BaselineError::Command {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(BaselineError::Command {
            command,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The full sha `commit` names in `repo`.
pub fn resolve_commit(repo: &Path, commit: &str) -> Result<String, BaselineError> {
    run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--verify"])
        .arg(format!("{commit}^{{commit}}")))
}

/// The paths whose contents make up the `rtmc` binary: the `system` crate
/// and the workspace's manifest, lock file and cargo configuration.
pub const RTMC_SOURCES: &[&str] = &["system", "Cargo.toml", "Cargo.lock", ".cargo"];

/// The paths whose contents make up the instruction benches: `rtmc`'s
/// sources, loadgen (its wire parser and histograms are benched), the
/// workspace crates loadgen and the benches link (`stats`, `testkit`) and
/// `benches`. A test checks this covers every path dependency.
pub const BENCH_SOURCES: &[&str] = &[
    "system",
    "loadgen",
    "stats",
    "testkit",
    "benches",
    "Cargo.toml",
    "Cargo.lock",
    ".cargo",
];

/// Files under the source paths that no build reads (no crate includes a
/// markdown file): a README edit must not cost the gate a baseline build
/// and two instruction-bench builds.
const NOT_BUILT: &str = ":(exclude,glob)**/*.md";

/// Whether the work tree of `repo` holds exactly the contents of `sha` under
/// `paths` (tracked changes, staged or not, and untracked files count). When
/// it does, a build of the baseline would compile the very same sources, so
/// the gate uses one build for both sides: the run is then an A/A run, which
/// is what comparing identical code is.
pub fn sources_identical(repo: &Path, sha: &str, paths: &[&str]) -> Result<bool, BaselineError> {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["diff", "--quiet", sha, "--"])
        .args(paths)
        .arg(NOT_BUILT)
        .status()
        .map_err(|e| BaselineError::Command {
            command: "git diff --quiet".into(),
            message: e.to_string(),
        })?;
    match status.code() {
        Some(0) => {}
        Some(1) => return Ok(false),
        _ => {
            return Err(BaselineError::Command {
                command: format!("git diff --quiet {sha}"),
                message: status.to_string(),
            })
        }
    }
    let untracked = run(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["ls-files", "--others", "--exclude-standard", "--"])
        .args(paths)
        .arg(NOT_BUILT))?;
    Ok(untracked.is_empty())
}

/// Copies `from` to `to`, replacing `to` without writing through it (a cargo
/// output is a hard link to its artifact; writing into it would change the
/// artifact too).
pub fn copy_replacing(from: &Path, to: &Path) -> Result<(), BaselineError> {
    let err = |source| BaselineError::Copy {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    };
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::copy(from, to).map(|_| ()).map_err(err)
}

/// Copies of the executables in `<target>/release`, taken before a build
/// that replaces them (the baseline's, a test-only feature build) and put
/// back after it, so `target/release/*` stay the candidate's release build
/// (`loadgen`, the instrument of both sides, included). Copies, never hard
/// links: a cargo output is a hard link to its artifact.
#[derive(Debug)]
pub struct ReleaseSnapshot {
    release: PathBuf,
    kept: PathBuf,
    names: Vec<std::ffi::OsString>,
}

impl ReleaseSnapshot {
    /// Copies every executable file of `<target>/release` into
    /// `<target>/gate/release-snapshot/`.
    pub fn take(target_dir: &Path) -> Result<Self, BaselineError> {
        use std::os::unix::fs::PermissionsExt;
        let release = target_dir.join("release");
        let kept = gate_dir(target_dir).join("release-snapshot");
        let mut names = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&release) {
            for e in entries.filter_map(Result::ok) {
                let executable = e
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
                if executable {
                    copy_replacing(&e.path(), &kept.join(e.file_name()))?;
                    names.push(e.file_name());
                }
            }
        }
        Ok(Self {
            release,
            kept,
            names,
        })
    }

    /// Puts every copied executable back into `<target>/release`.
    pub fn restore(&self) -> Result<(), BaselineError> {
        for name in &self.names {
            copy_replacing(&self.kept.join(name), &self.release.join(name))?;
        }
        Ok(())
    }
}

/// Where the gate keeps its worktrees and binaries: `<target>/gate`.
pub fn gate_dir(target_dir: &Path) -> PathBuf {
    target_dir.join("gate")
}

/// The shared release build (`ci/common.sh`'s selection): every gate build
/// uses exactly these arguments (plus, for a test-only build, `--features`
/// of `rtmc-system` that enable no dependency feature), so the dependencies
/// compiled for one are fresh for all and only workspace crates rebuild.
pub const RELEASE_BUILD: &[&str] = &["build", "--locked", "--release", "--workspace", "--bins"];

/// The baseline's `rtmc`, built on first use: a detached worktree of `sha`
/// under `<target>/gate/baseline-<sha>`, [`RELEASE_BUILD`] there with
/// `CARGO_TARGET_DIR = target_dir` (the same selection, features and profile
/// as the candidate's build, so only the workspace crates compile), the
/// binary copied to `<target>/gate/rtmc-<sha>`. Reused when that file
/// exists. The build replaces every binary in `<target>/release`: the
/// caller puts the candidate's back ([`ReleaseSnapshot`]). `log` receives
/// progress lines.
pub fn baseline_binary(
    repo: &Path,
    target_dir: &Path,
    sha: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, BaselineError> {
    let gate = gate_dir(target_dir);
    let kept = gate.join(format!("rtmc-{sha}"));
    if kept.is_file() {
        log(&format!("baseline rtmc {sha}: reusing {}", kept.display()));
        return Ok(kept);
    }
    let worktree = gate.join(format!("baseline-{sha}"));
    let head = run(Command::new("git")
        .arg("-C")
        .arg(&worktree)
        .args(["rev-parse", "HEAD"]))
    .ok();
    if head.as_deref() != Some(sha) {
        log(&format!(
            "baseline {sha}: git worktree at {}",
            worktree.display()
        ));
        let _ = std::fs::remove_dir_all(&worktree);
        run(Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["worktree", "prune"]))?;
        run(Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["worktree", "add", "--detach"])
            .arg(&worktree)
            .arg(sha))?;
    }
    let command = format!("cargo {}", RELEASE_BUILD.join(" "));
    log(&format!(
        "baseline {sha}: {command} (CARGO_TARGET_DIR={})",
        target_dir.display()
    ));
    let status = Command::new("cargo")
        .current_dir(&worktree)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(RELEASE_BUILD)
        .status()
        .map_err(|e| BaselineError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if !status.success() {
        return Err(BaselineError::Command {
            command: format!("{command} in {}", worktree.display()),
            message: status.to_string(),
        });
    }
    copy_replacing(&target_dir.join("release").join("rtmc"), &kept)?;
    Ok(kept)
}

#[cfg(test)]
mod tests {

    /// The workspace crates `crate_dir` links by path, itself included:
    /// its own dependencies of every kind (the benches are its targets),
    /// then their normal and build dependencies (not their dev ones).
    fn path_closure(root: &Path, crate_dir: &str) -> std::collections::BTreeSet<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![crate_dir.to_string()];
        while let Some(dir) = todo.pop() {
            if !seen.insert(dir.clone()) {
                continue;
            }
            let text = std::fs::read_to_string(root.join(&dir).join("Cargo.toml")).unwrap();
            let manifest: toml::Table = toml::from_str(&text).unwrap();
            let sections: &[&str] = if dir == crate_dir {
                &["dependencies", "dev-dependencies", "build-dependencies"]
            } else {
                &["dependencies", "build-dependencies"]
            };
            for section in sections {
                let Some(deps) = manifest.get(*section).and_then(|d| d.as_table()) else {
                    continue;
                };
                for dep in deps.values() {
                    if let Some(path) = dep.get("path").and_then(|p| p.as_str()) {
                        let name = Path::new(path).file_name().unwrap().to_string_lossy();
                        todo.push(name.into_owned());
                    }
                }
            }
        }
        seen
    }

    #[test]
    fn the_source_lists_cover_every_workspace_crate_the_binaries_link() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for (list, top) in [(RTMC_SOURCES, "system"), (BENCH_SOURCES, "benches")] {
            for dir in path_closure(root, top) {
                assert!(
                    list.contains(&dir.as_str()),
                    "{dir}/ is linked into {top}'s build but missing from its source list {list:?}: \
                     a change there would be judged as identical sources"
                );
            }
        }
    }
    use super::*;

    #[test]
    fn the_shipped_baseline_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline.toml");
        let cfg = BaselineConfig::load(&path).unwrap();
        assert_eq!(cfg.commit.len(), 40, "pin a full sha");
        assert!(cfg.bootstrap.resamples >= 2000);
        assert!(cfg.pairs >= 3);
        for m in Metric::ALL {
            assert!(cfg.rule(m).threshold_frac > 0.0, "{m}");
        }
        let profile = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(&cfg.profile);
        assert!(profile.is_file(), "{}", profile.display());
    }

    #[test]
    fn a_missing_or_unknown_threshold_is_refused() {
        let full: String = Metric::ALL
            .iter()
            .map(|m| format!("{}_pct = 10.0\n", m.key()))
            .collect();
        let ok = format!("commit = \"abc\"\n[thresholds]\nmeasured_by = \"test\"\n{full}");
        let cfg = BaselineConfig::parse(&ok).unwrap();
        assert_eq!(cfg.thresholds.measured_by, "test");
        assert_eq!(cfg.rule(Metric::AckP99).threshold_frac, 0.1);
        let missing = ok.replace("recv_p99_pct = 10.0\n", "");
        assert!(BaselineConfig::parse(&missing)
            .unwrap_err()
            .contains("recv_p99_pct is missing"));
        let unknown = format!("{ok}recv_p42_pct = 1.0\n");
        assert!(BaselineConfig::parse(&unknown)
            .unwrap_err()
            .contains("recv_p42_pct"));
    }

    #[test]
    fn copying_over_a_hard_link_leaves_its_twin_alone() {
        let dir = tempfile::tempdir().unwrap();
        let artifact = dir.path().join("artifact");
        let uplifted = dir.path().join("uplifted");
        let other = dir.path().join("other");
        std::fs::write(&artifact, "baseline").unwrap();
        std::fs::hard_link(&artifact, &uplifted).unwrap();
        std::fs::write(&other, "candidate").unwrap();
        copy_replacing(&other, &uplifted).unwrap();
        assert_eq!(std::fs::read_to_string(&uplifted).unwrap(), "candidate");
        assert_eq!(std::fs::read_to_string(&artifact).unwrap(), "baseline");
    }
}
