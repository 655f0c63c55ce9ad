//! The `gate` binary: a thin clap CLI over the library. Exit code 0 when no
//! regression was detected, 1 on a regression (or an A/A false alarm), 2 when
//! the gate could not judge.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rtmc_ci::ab::{CPU_ENV, DELAY_ENV};
use rtmc_ci::baseline::{gate_dir, BaselineConfig};
use rtmc_ci::gate::{self, BinaryOptions, InstructionMode, RunOptions};
use rtmc_ci::report;

#[derive(Parser, Debug)]
#[command(
    name = "gate",
    version,
    about = "rtmc latency regression gate: the pinned baseline against the candidate in interleaved loadgen rounds",
    after_help = "Exit code: 0 no regression detected, 1 regression (or an A/A false alarm), 2 could not judge.\n\
Reports: <out>/gate-report.md (for the pull request), gate.json, gate-report.txt, rounds.svg, rounds/<side>/pair-NN/ (loadgen's reports)."
)]
struct Cli {
    /// The baseline file: pinned commit, profile, pairs, bootstrap, thresholds.
    #[arg(long, default_value = "ci/baseline.toml")]
    config: PathBuf,
    /// The candidate's checkout (a git work tree); relative paths start here.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Cargo target directory of the candidate (the baseline is built there
    /// too) [default: $CARGO_TARGET_DIR, else <repo>/target].
    #[arg(long)]
    target_dir: Option<PathBuf>,
    /// loadgen profile for every round [default: `profile` in the baseline file].
    #[arg(long)]
    profile: Option<PathBuf>,
    /// A/B pairs, run A B B A A B … (rounds = 2 × pairs) [default: `pairs`
    /// in the baseline file].
    #[arg(long)]
    pairs: Option<usize>,
    /// Report directory [default: <target>/gate/reports/<timestamp>-<mode>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The instrument for both sides [default: <target>/release/loadgen].
    #[arg(long)]
    loadgen: Option<PathBuf>,
    /// The candidate's rtmc [default: <target>/release/rtmc].
    #[arg(long)]
    candidate_rtmc: Option<PathBuf>,
    /// Use this baseline rtmc instead of building the pinned commit in a
    /// worktree [default: the pinned commit, built once].
    #[arg(long)]
    baseline_rtmc: Option<PathBuf>,
    /// Do not run the candidate's release build; use the binaries as they are.
    #[arg(long)]
    no_build: bool,
    /// Run the candidate side with RTMC_TEST_BROADCAST_DELAY_US=N, on an
    /// rtmc built from the candidate's tree with the test-only feature
    /// rtmc-system/test-broadcast-delay (kept as
    /// <target>/gate/rtmc-candidate-delay-<commit>; with --candidate-rtmc,
    /// that binary is used as it is): checks the gate catches a known
    /// regression [default: none].
    #[arg(long, value_name = "N")]
    inject_delay_us: Option<u64>,
    /// The upstream main the baseline pin must be on (and HEAD, for
    /// --update-baseline) [default: the first of origin/main, main that
    /// exists; none: that check is skipped].
    #[arg(long, value_name = "REF")]
    landed_ref: Option<String>,
    /// Run the candidate side with RTMC_TEST_FANOUT_CPU_PCT=N, on an rtmc
    /// built from the candidate's tree with the test-only feature
    /// rtmc-system/test-fanout-cpu (busy work of about N% of a delivery's
    /// CPU in the fan-out): checks the gate catches a known CPU regression
    /// [default: none].
    #[arg(long, value_name = "N")]
    inject_cpu_pct: Option<u64>,
    /// Discarded warm-up rounds of the baseline before the A/B schedule
    /// [default: `warmup_rounds` in the baseline file].
    #[arg(long, value_name = "N")]
    warmup_rounds: Option<usize>,
    /// Skip the instruction-count check (latency rounds only).
    #[arg(long, conflicts_with = "instructions_only")]
    no_instructions: bool,
    /// Only the instruction-count check: no rtmc build, no rounds.
    #[arg(long)]
    instructions_only: bool,
    /// Build the candidate's instruction benches with these features, e.g.
    /// rtmc-system/test-codec-overhead (the test-only +3% in the codec)
    /// [default: none].
    #[arg(long, value_name = "FEATURES", value_delimiter = ',')]
    bench_features: Vec<String>,
    /// A round (one loadgen run) that takes longer is stopped; the gate errors.
    #[arg(long, default_value_t = 900)]
    round_timeout_secs: u64,
    /// A/A mode: the baseline against itself `--repeats` times; reports the
    /// spread of every ratio and interval and suggests thresholds.
    #[arg(long, conflicts_with_all = ["compare", "inject_delay_us", "inject_cpu_pct", "instructions_only"])]
    aa: bool,
    /// A/A repeats (each a full interleaved run).
    #[arg(long, default_value_t = 10, requires = "aa")]
    repeats: usize,
    /// Pin the current commit (HEAD, clean) as the baseline in the config
    /// file, run `--pairs` rounds of its rtmc and store their report.json
    /// and histograms in ci/gate/baseline/ (for reports and trends; the
    /// decision never uses them). Then commit both.
    #[arg(long, conflicts_with_all = ["aa", "compare", "inject_delay_us", "inject_cpu_pct", "instructions_only"])]
    update_baseline: bool,
    /// Re-judge saved rounds without running anything: DIR_A holds the
    /// baseline's round directories (or is one), DIR_B the candidate's
    /// [default: off, rounds are run].
    #[arg(long, num_args = 2, value_names = ["DIR_A", "DIR_B"])]
    compare: Option<Vec<PathBuf>>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// The short profile over the last N landed commits that changed
    /// measured code, interleaved in one job: trend.md, trend.svg,
    /// trend.json in --out.
    Trend {
        /// Commits to measure (first-parent history of the landed main).
        #[arg(long, default_value_t = 8)]
        commits: usize,
        /// Rounds per commit (passes over the commits, alternating
        /// direction).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

impl Cli {
    fn under_repo(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.repo.join(p)
        }
    }

    fn target_dir(&self) -> PathBuf {
        let dir = self
            .target_dir
            .clone()
            .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
            .unwrap_or_else(|| self.repo.join("target"));
        std::path::absolute(&dir).unwrap_or(dir)
    }

    fn out(&self, mode: &str) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            gate_dir(&self.target_dir()).join("reports").join(format!(
                "{}-{mode}",
                chrono::Local::now().format("%Y%m%d-%H%M%S")
            ))
        })
    }

    fn run_options(&self, cfg: &BaselineConfig, mode: &str) -> RunOptions {
        RunOptions {
            binaries: BinaryOptions {
                repo: self.repo.clone(),
                target_dir: self.target_dir(),
                loadgen: self.loadgen.clone(),
                candidate_rtmc: self.candidate_rtmc.clone(),
                baseline_rtmc: self.baseline_rtmc.clone(),
                build_candidate: !self.no_build,
                delay_feature: self.inject_delay_us.is_some(),
                cpu_feature: self.inject_cpu_pct.is_some(),
            },
            profile: self.profile.clone().unwrap_or_else(|| cfg.profile.clone()),
            pairs: self.pairs.unwrap_or(cfg.pairs),
            inject_delay_us: self.inject_delay_us,
            inject_cpu_pct: self.inject_cpu_pct,
            warmup_rounds: self.warmup_rounds.unwrap_or(cfg.warmup_rounds),
            round_timeout: Duration::from_secs(self.round_timeout_secs),
            out: self.out(mode),
            instructions: if self.instructions_only {
                InstructionMode::Only
            } else if self.no_instructions || mode != "run" {
                InstructionMode::Skip
            } else {
                InstructionMode::Both
            },
            bench_features: self.bench_features.clone(),
            config_path: Some(self.under_repo(&self.config)),
            landed_ref: self.landed_ref.clone(),
        }
    }
}

fn print_files(out: &Path, files: &[PathBuf]) {
    println!("report: {}", out.display());
    for f in files {
        println!("  {}", f.display());
    }
}

fn run(cli: &Cli) -> anyhow::Result<u8> {
    let cfg = BaselineConfig::load(&cli.under_repo(&cli.config))?;
    if let Some(dirs) = &cli.compare {
        let out = cli.out("compare");
        let r = gate::compare_dirs(&cfg, &dirs[0], &dirs[1], &out)?;
        print!("{}", report::render_table(&r));
        println!("report: {}", out.join("gate-report.md").display());
        return Ok(r.verdict.exit_code());
    }
    // Every mode below builds or stages binaries in the target directory.
    let _lock = rtmc_ci::lock::lock_target(&cli.target_dir())?;
    if let Some(Sub::Trend { commits, rounds }) = &cli.command {
        return run_trend(cli, &cfg, *commits, *rounds);
    }
    if cli.aa {
        return run_aa(cli, &cfg);
    }
    if cli.update_baseline {
        return update_baseline(cli, &cfg);
    }
    let opts = cli.run_options(&cfg, "run");
    if let Some(us) = opts.inject_delay_us {
        gate::log(&format!("candidate side runs with {DELAY_ENV}={us}"));
    }
    if let Some(pct) = opts.inject_cpu_pct {
        gate::log(&format!("candidate side runs with {CPU_ENV}={pct}"));
    }
    let r = gate::run_gate(&cfg, &opts)?;
    print!("{}", report::render_table(&r));
    println!("report: {}", opts.out.join("gate-report.md").display());
    Ok(r.verdict.exit_code())
}

/// `gate trend`.
fn run_trend(cli: &Cli, cfg: &BaselineConfig, commits: usize, rounds: usize) -> anyhow::Result<u8> {
    let opts = cli.run_options(cfg, "trend");
    let landed = opts
        .landed_ref
        .clone()
        .or_else(|| rtmc_ci::pin::landed_ref(&cli.repo))
        .ok_or_else(|| anyhow::anyhow!("no landed main (origin/main, main): give --landed-ref"))?;
    let r = rtmc_ci::trend::run_trend(cfg, &opts, &landed, commits, rounds)?;
    print!("{}", rtmc_ci::trend::render_markdown(&r));
    println!("report: {}", opts.out.join("trend.md").display());
    Ok(0)
}

/// `gate --aa`.
fn run_aa(cli: &Cli, cfg: &BaselineConfig) -> anyhow::Result<u8> {
    let opts = cli.run_options(cfg, "aa");
    let r = gate::run_aa(cfg, &opts, cli.repeats)?;
    let measured_by = format!(
        "gate --aa --repeats {} --pairs {} --profile {} ({}, load average {})",
        cli.repeats,
        opts.pairs,
        opts.profile.display(),
        chrono::Local::now().format("%Y-%m-%d"),
        load_average()
    );
    let files = report::write_aa_files(&opts.out, &r, &measured_by)?;
    print!("{}", report::render_aa(&r));
    print_files(&opts.out, &files);
    Ok(gate::aa_exit_code(&r))
}

/// `gate --update-baseline`.
fn update_baseline(cli: &Cli, cfg: &BaselineConfig) -> anyhow::Result<u8> {
    let opts = cli.run_options(cfg, "update-baseline");
    let config = cli.under_repo(&cli.config);
    let u = gate::update_baseline(&config, &opts)?;
    println!(
        "baseline pinned: commit = \"{}\" in {}",
        u.commit,
        u.config.display()
    );
    println!(
        "stored {} rounds' report.json and histograms in {}",
        u.rounds.len(),
        u.stored.display()
    );
    println!("next: gate --aa --repeats 10 (the noise can change with the code), paste aa-thresholds.toml over [thresholds], commit all three together");
    Ok(0)
}

/// The 1-minute load average, for the record of an A/A measurement.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag says what it is for and, unless it is required or a
    /// switch, what its default is (the rule `rtmc` and `loadgen` keep).
    #[test]
    fn every_argument_has_help_naming_its_default() {
        rtmc::cli_help::assert_documented(Cli::command());
    }
}
