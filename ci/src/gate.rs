//! One gate session, end to end: get the binaries (the baseline's built
//! from its pinned commit, the candidate's from the working tree), run the
//! interleaved rounds, compare, judge and write the reports — or re-judge
//! saved rounds (`--compare`), or measure the noise (`--aa`). The `gate`
//! binary is a thin CLI over these functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ab::{
    load_rounds, run_round, run_rounds, AbError, RoundSpec, Rounds, Slot, CPU_ENV, DELAY_ENV,
};
use crate::baseline::{
    baseline_binary, copy_replacing, gate_dir, resolve_commit, sources_identical, BaselineConfig,
    BaselineError, ReleaseSnapshot, BENCH_SOURCES, RELEASE_BUILD, RTMC_SOURCES,
};
use crate::compare::{aa_spread, compare_all};
use crate::instructions::{self, InstructionError, InstructionReport};
use crate::metric::Metric;
use crate::pin::{self, PinError, PinnedBy};
use crate::report::{AaReport, GateReport, GateSetup, ReportError, RoundSummary};
use crate::round::Side;
use crate::stored::StoredBaseline;
use crate::verdict::{judge, overall, GateVerdict};

/// Fewer rounds per side than this cannot be judged: one or two values per
/// side give an interval of nothing but the values themselves.
pub const MIN_ROUNDS_PER_SIDE: usize = 3;

/// Failure of a gate session (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Rounds(#[from] AbError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("instruction counts: {0}")]
    Instructions(#[from] InstructionError),
    #[error("{what} not found at {path}{hint}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("`{command}` failed: {status}")]
    Build { command: String, status: String },
    #[error("{path} was not built with {feature}: it would ignore the injection")]
    NoTestFeature {
        path: PathBuf,
        feature: &'static str,
    },
    #[error("--update-baseline pins a commit, but the work tree has uncommitted changes to tracked files: commit them first")]
    DirtyTree,
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("--update-baseline pins HEAD, which is not on the landed main ({landed_ref}): a submission never pins its own commit. Run it on a clean checkout of the landed main")]
    PinNotLanded { landed_ref: String },
    #[error("--update-baseline pins only a commit of the landed main, and no upstream main ({refs}) is known here: fetch it first")]
    NoLandedRef { refs: String },
    #[error("too few rounds to judge: {baseline} baseline and {candidate} candidate (at least {MIN_ROUNDS_PER_SIDE} each)")]
    TooFewRounds { baseline: usize, candidate: usize },
}

/// Where the binaries come from.
#[derive(Debug, Clone)]
pub struct BinaryOptions {
    /// The candidate's checkout (git root).
    pub repo: PathBuf,
    /// The candidate's cargo target directory (the baseline is built there too).
    pub target_dir: PathBuf,
    /// The instrument; default `<target>/release/loadgen`.
    pub loadgen: Option<PathBuf>,
    /// Default `<target>/release/rtmc`.
    pub candidate_rtmc: Option<PathBuf>,
    /// Skips the worktree build of the baseline.
    pub baseline_rtmc: Option<PathBuf>,
    /// Run the candidate's release build first.
    pub build_candidate: bool,
    /// The candidate side runs an `rtmc` with the test-only broadcast delay
    /// (`--inject-delay-us`): built from the candidate's tree unless
    /// `candidate_rtmc` is given.
    pub delay_feature: bool,
    /// The candidate side runs an `rtmc` with the test-only fan-out CPU work
    /// (`--inject-cpu-pct`), built alike.
    pub cpu_feature: bool,
}

/// The three binaries a session runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub loadgen: PathBuf,
    pub baseline_rtmc: PathBuf,
    pub candidate_rtmc: PathBuf,
}

/// Progress lines go to stderr, so stdout is the table alone.
pub fn log(line: &str) {
    eprintln!("gate: {line}");
}

/// `cargo ARGS` in `dir` with `CARGO_TARGET_DIR = target_dir`.
pub fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) -> Result<(), GateError> {
    let command = format!("cargo {}", args.join(" "));
    log(&format!("{command} (in {})", dir.display()));
    let status = Command::new("cargo")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(args)
        .status()
        .map_err(|e| GateError::Build {
            command: command.clone(),
            status: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(GateError::Build {
            command,
            status: status.to_string(),
        })
    }
}

fn cargo_release_build(repo: &Path, target_dir: &Path) -> Result<(), GateError> {
    // The same selection as ci/common.sh's release_build, so the gate reuses
    // that build instead of compiling another feature set.
    cargo(repo, target_dir, RELEASE_BUILD)
}

/// The cargo feature that makes `rtmc` read [`DELAY_ENV`].
pub const DELAY_FEATURE: &str = "rtmc-system/test-broadcast-delay";

/// The cargo feature that makes `rtmc` read [`CPU_ENV`].
pub const CPU_FEATURE: &str = "rtmc-system/test-fanout-cpu";

/// Whether `bin` holds `name` (a feature's variable name: the release build
/// never does).
fn holds_name(bin: &Path, name: &str) -> bool {
    std::fs::read(bin).is_ok_and(|bytes| bytes.windows(name.len()).any(|w| w == name.as_bytes()))
}

/// Whether `bin` was built with the broadcast-delay feature (it then holds
/// the variable's name; the release build never does).
pub fn has_delay_feature(bin: &Path) -> bool {
    holds_name(bin, DELAY_ENV)
}

/// Whether `bin` was built with the fan-out CPU feature.
pub fn has_cpu_feature(bin: &Path) -> bool {
    holds_name(bin, CPU_ENV)
}

/// The test-only features the candidate's `rtmc` needs, with the variable
/// each makes it read.
fn test_features(opts: &BinaryOptions) -> Vec<(&'static str, &'static str)> {
    let mut f = Vec::new();
    if opts.delay_feature {
        f.push((DELAY_FEATURE, DELAY_ENV));
    }
    if opts.cpu_feature {
        f.push((CPU_FEATURE, CPU_ENV));
    }
    f
}

/// The candidate's `rtmc` with test-only features compiled in: the shared
/// release build ([`RELEASE_BUILD`], the same package selection and profile,
/// so no dependency rebuilds: the features enable none) plus `--features`,
/// in the candidate's tree and target directory, copied to
/// `<target>/gate/rtmc-candidate-<features>-<commit>`; then every binary of
/// `target/release` is put back. With `build` false only the kept copy is
/// looked up.
fn test_feature_candidate(opts: &BinaryOptions, build: bool) -> Result<PathBuf, GateError> {
    let features = test_features(opts);
    let tag: String = candidate_commit(&opts.repo)
        .unwrap_or_else(|| "unknown".into())
        .replace('+', "-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let names: Vec<&str> = features
        .iter()
        .map(|(f, _)| f.trim_start_matches("rtmc-system/test-"))
        .collect();
    let kept = gate_dir(&opts.target_dir).join(format!("rtmc-candidate-{}-{tag}", names.join("-")));
    if build {
        let list = features
            .iter()
            .map(|(f, _)| *f)
            .collect::<Vec<_>>()
            .join(",");
        let mut args = RELEASE_BUILD.to_vec();
        args.extend(["--features", &list]);
        let snapshot = ReleaseSnapshot::take(&opts.target_dir)?;
        let built = cargo(&opts.repo, &opts.target_dir, &args);
        let copied = built.and_then(|()| {
            let release = opts.target_dir.join("release").join("rtmc");
            copy_replacing(&release, &kept).map_err(GateError::from)
        });
        snapshot.restore()?;
        copied?;
    }
    let kept = must_exist(
        "the candidate's rtmc with the test-only features",
        kept,
        " (drop --no-build, or pass --candidate-rtmc)",
    )?;
    if let Some((feature, _)) = features.iter().find(|(_, env)| !holds_name(&kept, env)) {
        return Err(GateError::NoTestFeature {
            path: kept,
            feature,
        });
    }
    Ok(kept)
}

fn must_exist(what: &'static str, path: PathBuf, hint: &'static str) -> Result<PathBuf, GateError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(GateError::Missing { what, path, hint })
    }
}

const BUILD_HINT: &str =
    " (build it: cargo build --release --workspace --bins, or drop --no-build)";

/// The baseline's `rtmc`: given, the candidate's when the sources are
/// identical, else built from the pinned commit (its build replaces every
/// binary of `target/release`; they are put back).
fn baseline_rtmc(
    opts: &BinaryOptions,
    sha: &str,
    candidate: Option<&Path>,
) -> Result<PathBuf, GateError> {
    if let Some(p) = &opts.baseline_rtmc {
        return must_exist("the baseline's rtmc", p.clone(), "");
    }
    if let Some(staged) = candidate {
        if sources_identical(&opts.repo, sha, RTMC_SOURCES)? {
            log(&format!(
                "baseline {sha}: {} identical to the work tree's, so one rtmc serves both sides (an A/A run)",
                RTMC_SOURCES.join(", ")
            ));
            let kept = gate_dir(&opts.target_dir).join("rtmc-baseline-same-sources");
            copy_replacing(staged, &kept)?;
            return Ok(kept);
        }
    }
    let snapshot = ReleaseSnapshot::take(&opts.target_dir)?;
    let bin = baseline_binary(&opts.repo, &opts.target_dir, sha, &mut |l| log(l));
    snapshot.restore()?;
    Ok(bin?)
}

/// Builds what is missing and returns the binaries. The candidate's `rtmc`
/// and `loadgen` are copied to `<target>/gate/` before anything else is
/// built into the same target directory; the baseline's build and a
/// test-only feature build (`--inject-delay-us`, `--inject-cpu-pct`) put
/// `target/release` back afterwards. A/A (`need_candidate` false) runs the
/// baseline on both sides and needs no candidate `rtmc`.
pub fn prepare_binaries(
    opts: &BinaryOptions,
    sha: &str,
    need_candidate: bool,
) -> Result<Binaries, GateError> {
    let release = opts.target_dir.join("release");
    if opts.build_candidate {
        cargo_release_build(&opts.repo, &opts.target_dir)?;
    }
    let loadgen = must_exist(
        "loadgen",
        opts.loadgen
            .clone()
            .unwrap_or_else(|| release.join("loadgen")),
        BUILD_HINT,
    )?;
    let candidate_src = opts
        .candidate_rtmc
        .clone()
        .unwrap_or_else(|| release.join("rtmc"));
    let staged = gate_dir(&opts.target_dir).join("rtmc-candidate");
    let candidate = if need_candidate || candidate_src.is_file() {
        let src = must_exist("the candidate's rtmc", candidate_src, BUILD_HINT)?;
        copy_replacing(&src, &staged)?;
        Some(staged)
    } else {
        None
    };
    // A candidate given by path may be any build (a test-only feature's):
    // when the sources are identical the baseline is the tree's own
    // release rtmc, never that binary.
    let tree_rtmc = release.join("rtmc");
    let same_sources_rtmc = match &opts.candidate_rtmc {
        Some(_) if tree_rtmc.is_file() => Some(tree_rtmc.as_path()),
        _ => candidate.as_deref(),
    };
    let baseline_rtmc = baseline_rtmc(opts, sha, same_sources_rtmc)?;
    let candidate = match candidate {
        Some(_) if !test_features(opts).is_empty() && opts.candidate_rtmc.is_none() => {
            Some(test_feature_candidate(opts, opts.build_candidate)?)
        }
        other => other,
    };
    Ok(Binaries {
        loadgen,
        candidate_rtmc: candidate.unwrap_or_else(|| baseline_rtmc.clone()),
        baseline_rtmc,
    })
}

/// `git rev-parse HEAD` of the candidate, `+dirty` when tracked files changed.
pub fn candidate_commit(repo: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// Fewer rounds are shown (a quick functional run, `--pairs 1`) but never
/// judged: the verdict is "could not judge", for this reason.
fn too_few_rounds(na: usize, nb: usize) -> Option<String> {
    (na < MIN_ROUNDS_PER_SIDE || nb < MIN_ROUNDS_PER_SIDE).then(|| {
        format!(
            "too few rounds to judge: {na} baseline and {nb} candidate (at least {MIN_ROUNDS_PER_SIDE} each); the values are shown, not judged"
        )
    })
}

/// Compares and judges `rounds` under `cfg`'s rules.
pub fn judge_rounds(
    rounds: &Rounds,
    cfg: &BaselineConfig,
    setup: GateSetup,
) -> Result<GateReport, GateError> {
    let (na, nb) = (rounds.baseline.len(), rounds.candidate.len());
    if na == 0 || nb == 0 {
        return Err(GateError::TooFewRounds {
            baseline: na,
            candidate: nb,
        });
    }
    let too_few = too_few_rounds(na, nb);
    let comparisons = compare_all(&rounds.baseline, &rounds.candidate, &cfg.bootstrap);
    let mut judgements: Vec<_> = comparisons
        .iter()
        .map(|c| judge(c, cfg.rule(c.metric)))
        .collect();
    let baseline_failures = rounds.failures(Side::Baseline);
    let candidate_failures = rounds.failures(Side::Candidate);
    let verdict = match too_few {
        Some(_) => GateVerdict::Error,
        None => overall(&judgements, &baseline_failures, &candidate_failures),
    };
    // When the gate cannot judge, no metric row may read as a verdict.
    if verdict == GateVerdict::Error {
        let why = if too_few.is_some() {
            "too few rounds"
        } else {
            "a baseline round failed"
        };
        judgements = judgements
            .into_iter()
            .zip(&comparisons)
            .map(|(j, c)| j.not_judged(c, why))
            .collect();
    }
    Ok(GateReport {
        setup: GateSetup {
            thresholds_measured_by: cfg.thresholds.measured_by.clone(),
            ..setup
        },
        bootstrap: cfg.bootstrap,
        agreement_frac: cfg.agreement_frac,
        rounds: rounds
            .in_order()
            .into_iter()
            .map(RoundSummary::of)
            .collect(),
        comparisons,
        judgements,
        baseline_failures,
        candidate_failures,
        instructions: None,
        notes: too_few.into_iter().collect(),
        verdict,
    })
}

/// What a run needs besides the baseline file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub binaries: BinaryOptions,
    /// Profile, absolute or relative to the repository.
    pub profile: PathBuf,
    pub pairs: usize,
    /// Discarded rounds before the schedule.
    pub warmup_rounds: usize,
    pub inject_delay_us: Option<u64>,
    pub inject_cpu_pct: Option<u64>,
    pub round_timeout: Duration,
    pub out: PathBuf,
    /// Whether the instruction-count check runs, alone or with the rounds.
    pub instructions: InstructionMode,
    /// Features of the candidate's instruction benches (test-only switches
    /// such as `rtmc-system/test-codec-overhead`).
    pub bench_features: Vec<String>,
    /// The baseline file the pin was read from (the pin check searches its
    /// history); `None` skips the check.
    pub config_path: Option<PathBuf>,
    /// The upstream main a pin must be on; `None` = the first of
    /// [`pin::LANDED_REFS`] that exists.
    pub landed_ref: Option<String>,
}

/// Which checks a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructionMode {
    /// Latency rounds and instruction counts (the default).
    Both,
    /// Latency rounds only (`--no-instructions`).
    Skip,
    /// Instruction counts only (`--instructions-only`).
    Only,
}

fn now() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string()
}

fn setup_of(mode: &str, sha: &str, opts: &RunOptions, bins: &Binaries) -> GateSetup {
    GateSetup {
        mode: mode.into(),
        generated_at: now(),
        baseline_commit: Some(sha.to_owned()),
        candidate_commit: candidate_commit(&opts.binaries.repo),
        baseline_rtmc: Some(bins.baseline_rtmc.clone()),
        candidate_rtmc: Some(bins.candidate_rtmc.clone()),
        loadgen: Some(bins.loadgen.clone()),
        profile: Some(opts.profile.clone()),
        inject_delay_us: opts.inject_delay_us,
        thresholds_measured_by: String::new(),
        baseline_landed: None,
        inject_cpu_pct: opts.inject_cpu_pct,
    }
}

/// The pin check (ci/README.md, "The pin"): the baseline must be an ancestor
/// of HEAD, a strict ancestor of the change that pinned it, and on the
/// landed main. Returns the landed commit as a person reads it, logged at
/// the start and put in the report. Skipped (`None`) without a config path
/// or when the pin is not a commit of this repository (`--baseline-rtmc`).
pub fn check_pin(
    cfg: &BaselineConfig,
    opts: &RunOptions,
    sha: &str,
) -> Result<Option<String>, GateError> {
    let repo = &opts.binaries.repo;
    let Some(config) = &opts.config_path else {
        return Ok(None);
    };
    if resolve_commit(repo, sha).is_err() {
        return Ok(None);
    }
    let Some(rel) = pin::path_in_repo(repo, config) else {
        log(&format!(
            "pin check: {} lies outside the repository, so only ancestry is checked",
            config.display()
        ));
        return Ok(None);
    };
    let landed = opts.landed_ref.clone().or_else(|| pin::landed_ref(repo));
    let check = pin::check_pin(repo, &rel, &cfg.commit, sha, landed.as_deref())?;
    let by = match &check.pinned_by {
        PinnedBy::Commit(c) => format!("pinned by {c}"),
        PinnedBy::WorkTree => "pinned in the work tree (uncommitted)".into(),
    };
    let on = check
        .landed_ref
        .as_deref()
        .map_or("no upstream main known here".into(), |r| format!("on {r}"));
    let line = format!("{} — {by}; {on}", check.baseline);
    log(&format!("measuring against the landed commit {line}"));
    Ok(Some(line))
}

/// The baseline's full sha. With `--baseline-rtmc` the binary is given, so
/// a commit git cannot resolve (no checkout) is only reported as written.
fn baseline_sha(cfg: &BaselineConfig, opts: &RunOptions) -> Result<String, GateError> {
    match resolve_commit(&opts.binaries.repo, &cfg.commit) {
        Ok(sha) => Ok(sha),
        Err(e) if opts.binaries.baseline_rtmc.is_some() => {
            log(&format!(
                "baseline commit {} not resolved ({e}); using the given --baseline-rtmc",
                cfg.commit
            ));
            Ok(cfg.commit.clone())
        }
        Err(e) => Err(e.into()),
    }
}

fn profile_path(opts: &RunOptions) -> PathBuf {
    if opts.profile.is_absolute() {
        opts.profile.clone()
    } else {
        opts.binaries.repo.join(&opts.profile)
    }
}

/// What every round runs; `b_side` is the B side's `rtmc` (the baseline's
/// again in A/A).
fn round_spec(
    opts: &RunOptions,
    bins: &Binaries,
    b_side: &Path,
    inject: bool,
) -> Result<RoundSpec, GateError> {
    Ok(RoundSpec {
        loadgen: bins.loadgen.clone(),
        profile: must_exist("the gate profile", profile_path(opts), "")?,
        baseline_rtmc: bins.baseline_rtmc.clone(),
        candidate_rtmc: b_side.to_owned(),
        inject_delay_us: opts.inject_delay_us.filter(|_| inject),
        inject_cpu_pct: opts.inject_cpu_pct.filter(|_| inject),
        warmup_rounds: opts.warmup_rounds,
        timeout: opts.round_timeout,
    })
}

/// `gate`: baseline against candidate, interleaved; writes the reports into
/// `opts.out`. With `opts.instructions` also (or only) the instruction
/// counts.
pub fn run_gate(cfg: &BaselineConfig, opts: &RunOptions) -> Result<GateReport, GateError> {
    let sha = baseline_sha(cfg, opts)?;
    let landed = check_pin(cfg, opts, &sha)?;
    if opts.instructions == InstructionMode::Only {
        let inst = measure_instructions(cfg, opts, &sha)?;
        let setup = GateSetup {
            mode: "instructions".into(),
            generated_at: now(),
            baseline_commit: Some(sha.clone()),
            candidate_commit: candidate_commit(&opts.binaries.repo),
            baseline_landed: landed,
            ..Default::default()
        };
        let report = instructions_only_report(cfg, setup, inst);
        crate::report::write_gate_files(&opts.out, &report)?;
        return Ok(report);
    }
    let bins = prepare_binaries(&opts.binaries, &sha, true)?;
    if opts.inject_delay_us.is_some() && !has_delay_feature(&bins.candidate_rtmc) {
        log(&format!(
            "warning: {} was not built with {DELAY_FEATURE}: it ignores {DELAY_ENV}, so the gate should pass",
            bins.candidate_rtmc.display()
        ));
    }
    if opts.inject_cpu_pct.is_some() && !has_cpu_feature(&bins.candidate_rtmc) {
        log(&format!(
            "warning: {} was not built with {CPU_FEATURE}: it ignores {CPU_ENV}, so the gate should pass",
            bins.candidate_rtmc.display()
        ));
    }
    let inst = match opts.instructions {
        InstructionMode::Both => Some(measure_instructions(cfg, opts, &sha)?),
        _ => None,
    };
    let spec = round_spec(opts, &bins, &bins.candidate_rtmc, true)?;
    let rounds = run_rounds(&spec, opts.pairs, &opts.out, &mut |l| log(l))?;
    let mut setup = setup_of("run", &sha, opts, &bins);
    setup.baseline_landed = landed;
    let mut report = judge_rounds(&rounds, cfg, setup)?;
    report.verdict = with_instructions(report.verdict, inst.as_ref());
    report.instructions = inst;
    crate::report::write_gate_files(&opts.out, &report)?;
    Ok(report)
}

/// The latency verdict combined with the instruction check: a count beyond
/// its threshold is a regression (unless nothing could be judged).
pub fn with_instructions(verdict: GateVerdict, inst: Option<&InstructionReport>) -> GateVerdict {
    match (verdict, inst) {
        (GateVerdict::Pass, Some(i)) if !i.regressed().is_empty() => GateVerdict::Regression,
        (v, _) => v,
    }
}

/// A report with the instruction counts alone (`--instructions-only`).
fn instructions_only_report(
    cfg: &BaselineConfig,
    setup: GateSetup,
    inst: InstructionReport,
) -> GateReport {
    GateReport {
        setup,
        bootstrap: cfg.bootstrap,
        agreement_frac: cfg.agreement_frac,
        rounds: vec![],
        comparisons: vec![],
        judgements: vec![],
        baseline_failures: vec![],
        candidate_failures: vec![],
        notes: vec![],
        verdict: with_instructions(GateVerdict::Pass, Some(&inst)),
        instructions: Some(inst),
    }
}

/// Builds and runs the instruction benches of the baseline commit, then of
/// the candidate's work tree, both from `<target>/gate/instructions-src`
/// (the same path, so the same symbol names and layout; module docs of
/// [`instructions`]), and compares them.
pub fn measure_instructions(
    cfg: &BaselineConfig,
    opts: &RunOptions,
    sha: &str,
) -> Result<InstructionReport, GateError> {
    let b = &opts.binaries;
    if opts.bench_features.is_empty() && sources_identical(&b.repo, sha, BENCH_SOURCES)? {
        let why = format!(
            "not measured: {} are identical to the baseline {sha}'s, so every count is too (callgrind counts are deterministic for the same sources and build)",
            BENCH_SOURCES.join(", ")
        );
        log(&format!("instructions: {why}"));
        return Ok(InstructionReport {
            threshold_pct: cfg.instructions.threshold_pct,
            candidate_features: vec![],
            benches: vec![],
            skipped: Some(why),
        });
    }
    instructions::check_tools()?;
    let src = gate_dir(&b.target_dir).join("instructions-src");
    log(&format!(
        "instructions: baseline {sha} (sources in {})",
        src.display()
    ));
    instructions::fill_from_commit(&b.repo, sha, &src)?;
    let note = |side: &str| {
        format!(
            "the {side} has no {}: the instruction check needs it on both sides (move the baseline forward)",
            instructions::BENCH_FILE
        )
    };
    if !src.join(instructions::BENCH_FILE).is_file() {
        return Err(InstructionError::Missing(note("baseline")).into());
    }
    let baseline = instructions::measure(&src, &b.target_dir, &[])?;
    log("instructions: candidate (the work tree)");
    instructions::fill_from_work_tree(&b.repo, &src)?;
    if !src.join(instructions::BENCH_FILE).is_file() {
        return Err(InstructionError::Missing(note("candidate")).into());
    }
    let candidate = instructions::measure(&src, &b.target_dir, &opts.bench_features)?;
    let t = cfg.instructions.threshold_pct;
    Ok(InstructionReport {
        threshold_pct: t,
        candidate_features: opts.bench_features.clone(),
        benches: instructions::compare(&baseline, &candidate, t),
        skipped: None,
    })
}

/// `gate --compare DIR_A DIR_B`: re-judges saved rounds, runs nothing.
pub fn compare_dirs(
    cfg: &BaselineConfig,
    dir_a: &Path,
    dir_b: &Path,
    out: &Path,
) -> Result<GateReport, GateError> {
    let rounds = load_rounds(dir_a, dir_b)?;
    let setup = GateSetup {
        mode: "compare".into(),
        generated_at: now(),
        baseline_commit: Some(format!("rounds in {}", dir_a.display())),
        candidate_commit: Some(format!("rounds in {}", dir_b.display())),
        ..Default::default()
    };
    let report = judge_rounds(&rounds, cfg, setup)?;
    crate::report::write_gate_files(out, &report)?;
    Ok(report)
}

/// `gate --aa`: the baseline against itself `repeats` times (each repeat a
/// full interleaved run into `out/aa-NN/`), the spread of every ratio and
/// interval, and the false alarms under the current thresholds.
pub fn run_aa(
    cfg: &BaselineConfig,
    opts: &RunOptions,
    repeats: usize,
) -> Result<AaReport, GateError> {
    let sha = baseline_sha(cfg, opts)?;
    let bins = prepare_binaries(&opts.binaries, &sha, false)?;
    let spec = round_spec(opts, &bins, &bins.baseline_rtmc, false)?;
    let mut all = Vec::new();
    let mut dirs = Vec::new();
    let mut false_alarms: BTreeMap<Metric, usize> = Metric::ALL.iter().map(|m| (*m, 0)).collect();
    for k in 0..repeats {
        let dir = opts.out.join(format!("aa-{:02}", k + 1));
        log(&format!(
            "A/A repeat {}/{repeats} → {}",
            k + 1,
            dir.display()
        ));
        let rounds = run_rounds(&spec, opts.pairs, &dir, &mut |l| log(l))?;
        let mut setup = setup_of("aa", &sha, opts, &bins);
        setup.candidate_commit = Some(format!("{sha} (A/A: the baseline again)"));
        let report = judge_rounds(&rounds, cfg, setup)?;
        crate::report::write_gate_files(&dir, &report)?;
        // A repeat that could not be judged (too few rounds, a failed
        // baseline round) raises no alarm, false or not.
        if report.verdict != GateVerdict::Error {
            count_false_alarms(&mut false_alarms, &report);
        }
        log(&format!("A/A repeat {}: {:?}", k + 1, report.verdict));
        all.push(report.comparisons);
        dirs.push(dir);
    }
    let mut setup = setup_of("aa", &sha, opts, &bins);
    setup.thresholds_measured_by = cfg.thresholds.measured_by.clone();
    Ok(AaReport {
        setup,
        repeats,
        pairs: opts.pairs,
        spreads: aa_spread(&all),
        thresholds_pct: Metric::ALL
            .iter()
            .map(|m| (*m, 100.0 * cfg.rule(*m).threshold_frac))
            .collect(),
        false_alarms,
        repeat_dirs: dirs,
    })
}

/// In A/A every regression verdict is a false alarm.
fn count_false_alarms(counts: &mut BTreeMap<Metric, usize>, report: &GateReport) {
    for j in report.judgements.iter().filter(|j| j.verdict.fails()) {
        *counts.entry(j.metric).or_default() += 1;
    }
}

/// The exit code of an A/A session: 1 when any repeat raised a false alarm.
pub fn aa_exit_code(r: &AaReport) -> u8 {
    if r.total_false_alarms() == 0 {
        GateVerdict::Pass.exit_code()
    } else {
        GateVerdict::Regression.exit_code()
    }
}

/// What `gate --update-baseline` did.
#[derive(Debug, Clone)]
pub struct BaselineUpdate {
    pub commit: String,
    pub config: PathBuf,
    /// Where the rounds' reports and histograms were stored.
    pub stored: PathBuf,
    pub rounds: Vec<crate::round::Round>,
}

/// Where `--update-baseline` keeps the pinned commit's histograms, relative
/// to the repository root.
pub const STORED_BASELINE_DIR: &str = "ci/gate/baseline";

/// `gate --update-baseline`: pins the candidate's commit (HEAD, which must be
/// clean) as the baseline in `config_path`, runs `opts.pairs` rounds of its
/// `rtmc`, and stores each round's `report.json` and `.hgrm` histograms in
/// `ci/gate/baseline/round-NN/` with a `baseline.json` summary — for reports
/// and trends; the gate's decision never uses them (it measures the baseline
/// again every run).
pub fn update_baseline(config_path: &Path, opts: &RunOptions) -> Result<BaselineUpdate, GateError> {
    let repo = &opts.binaries.repo;
    let head = candidate_commit(repo).ok_or_else(|| GateError::Build {
        command: "git rev-parse HEAD".into(),
        status: format!("{} is not a git work tree", repo.display()),
    })?;
    if head.ends_with("+dirty") {
        return Err(GateError::DirtyTree);
    }
    require_landed_head(repo, opts)?;
    let b = &opts.binaries;
    if b.build_candidate {
        cargo_release_build(repo, &b.target_dir)?;
    }
    let release = b.target_dir.join("release");
    let loadgen = must_exist(
        "loadgen",
        b.loadgen.clone().unwrap_or_else(|| release.join("loadgen")),
        BUILD_HINT,
    )?;
    let rtmc = must_exist(
        "the candidate's rtmc",
        b.candidate_rtmc
            .clone()
            .unwrap_or_else(|| release.join("rtmc")),
        BUILD_HINT,
    )?;
    let staged = gate_dir(&b.target_dir).join("rtmc-candidate");
    copy_replacing(&rtmc, &staged)?;
    let spec = RoundSpec {
        loadgen,
        profile: must_exist("the gate profile", profile_path(opts), "")?,
        baseline_rtmc: staged.clone(),
        candidate_rtmc: staged,
        inject_delay_us: None,
        inject_cpu_pct: None,
        warmup_rounds: 0,
        timeout: opts.round_timeout,
    };
    let mut rounds = Vec::new();
    for pair in 0..opts.pairs {
        log(&format!("baseline round {}/{}", pair + 1, opts.pairs));
        let slot = Slot {
            order: pair,
            pair,
            side: Side::Baseline,
        };
        rounds.push(run_round(&spec, &opts.out, &slot)?);
    }
    let stored = repo.join(STORED_BASELINE_DIR);
    store_rounds(&stored, repo, &head, opts, &rounds)?;
    pin_commit(config_path, &head)?;
    Ok(BaselineUpdate {
        commit: head,
        config: config_path.to_owned(),
        stored,
        rounds,
    })
}

/// `--update-baseline` pins HEAD, so HEAD must already be on the landed
/// main: pinning one's own work would make every later gate compare the
/// submission with itself.
fn require_landed_head(repo: &Path, opts: &RunOptions) -> Result<(), GateError> {
    let landed = opts
        .landed_ref
        .clone()
        .or_else(|| pin::landed_ref(repo))
        .ok_or_else(|| GateError::NoLandedRef {
            refs: pin::LANDED_REFS.join(", "),
        })?;
    if pin::is_ancestor(repo, "HEAD", &landed)? {
        log(&format!(
            "pinning HEAD, which is on the landed main {landed}"
        ));
        Ok(())
    } else {
        Err(GateError::PinNotLanded { landed_ref: landed })
    }
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> GateError {
    let path = path.to_owned();
    move |source| GateError::Write { path, source }
}

/// Replaces `dir` with the rounds' `report.json` and `*.hgrm` files and a
/// `baseline.json` summary (no machine path in it: [`StoredBaseline`]).
fn store_rounds(
    dir: &Path,
    repo: &Path,
    commit: &str,
    opts: &RunOptions,
    rounds: &[crate::round::Round],
) -> Result<(), GateError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(dir)(e)),
    }
    for r in rounds {
        let to = dir.join(crate::stored::round_dir_name(r.pair));
        std::fs::create_dir_all(&to).map_err(write_err(&to))?;
        let entries = std::fs::read_dir(&r.dir).map_err(write_err(&r.dir))?;
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name == "report.json" || name.ends_with(".hgrm") {
                std::fs::copy(e.path(), to.join(&*name)).map_err(write_err(&e.path()))?;
            }
        }
    }
    let summary = StoredBaseline::of(commit, now(), repo, &opts.profile, rounds);
    let path = dir.join(crate::stored::SUMMARY_FILE);
    let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&path, text).map_err(write_err(&path))
}

/// Rewrites the `commit = "…"` line of the baseline file, keeping the rest
/// (comments included) as it is.
pub fn pin_commit(config_path: &Path, sha: &str) -> Result<(), GateError> {
    let text = std::fs::read_to_string(config_path).map_err(write_err(config_path))?;
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if !found && l.trim_start().starts_with("commit") && l.contains('=') {
                found = true;
                format!("commit = \"{sha}\"")
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        return Err(GateError::Baseline(BaselineError::Invalid {
            path: config_path.to_owned(),
            message: "no `commit = ...` line to update".into(),
        }));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    BaselineConfig::parse(&out).map_err(|message| BaselineError::Invalid {
        path: config_path.to_owned(),
        message,
    })?;
    std::fs::write(config_path, out).map_err(write_err(config_path))
}
