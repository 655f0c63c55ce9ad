//! `gate trend`: the short profile over the last N landed commits that
//! changed measured code, interleaved in one job, so a slow drift of many
//! small changes shows even where no single change crossed a threshold.
//!
//! The commits are main's first-parent history whose `rtmc` sources
//! ([`RTMC_SOURCES`], markdown aside) differ from their predecessor's. Each
//! is built once into `<target>/gate/rtmc-<sha>` (the baseline build, reused
//! by later gates and trends). The rounds go oldest → newest, then newest →
//! oldest, and so on (a linear drift of the machine cancels as in the A/B
//! schedule). Per metric and commit: the median of its rounds and the
//! bootstrap interval of its ratio to the oldest commit's; `trend.md` holds
//! the table, `trend.svg` one panel per metric (ratio and interval against
//! commit order), `trend.json` everything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use plotters::prelude::*;
use rtmc_loadgen::report::plots::PlotResult;
use serde::{Deserialize, Serialize};

use crate::ab::{run_round_in, AbError, RoundSpec, Slot};
use crate::baseline::{baseline_binary, BaselineConfig, ReleaseSnapshot, RTMC_SOURCES};
use crate::compare::{median, ratio_of_medians, RatioEstimate};
use crate::gate::{log, GateError, RunOptions};
use crate::metric::Metric;
use crate::pin::{commit_info, CommitInfo};
use crate::round::{Round, Side};

/// One commit's rounds, summarised per metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrendPoint {
    pub commit: CommitInfo,
    /// Per metric: the median of this commit's rounds and its ratio to the
    /// oldest commit's median with a bootstrap interval; absent when a round
    /// lacked the metric.
    pub metrics: Vec<(Metric, f64, RatioEstimate)>,
    pub round_dirs: Vec<PathBuf>,
}

/// `trend.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrendReport {
    /// Oldest first.
    pub points: Vec<TrendPoint>,
    pub rounds_per_commit: usize,
    pub profile: PathBuf,
}

fn git(repo: &Path, args: &[&str]) -> Result<std::process::Output, GateError> {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| GateError::Build {
            command: format!("git {}", args.join(" ")),
            status: e.to_string(),
        })
}

/// The last `n` first-parent commits of `landed` whose measured sources
/// differ from their first parent's, oldest first.
pub fn measured_commits(repo: &Path, landed: &str, n: usize) -> Result<Vec<String>, GateError> {
    let out = git(repo, &["rev-list", "--first-parent", landed])?;
    let mut picked = Vec::new();
    for sha in String::from_utf8_lossy(&out.stdout).lines() {
        if picked.len() == n {
            break;
        }
        let mut args: Vec<String> = vec![
            "diff".into(),
            "--quiet".into(),
            format!("{sha}^"),
            sha.to_owned(),
            "--".into(),
        ];
        args.extend(RTMC_SOURCES.iter().map(|s| (*s).to_owned()));
        args.push(":(exclude,glob)**/*.md".into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // Exit 1: the commit changed measured code (a root commit, with no
        // parent, errs and is left out).
        if git(repo, &refs)?.status.code() == Some(1) {
            picked.push(sha.to_owned());
        }
    }
    picked.reverse();
    Ok(picked)
}

/// Each commit's `rtmc`, built once (`target/release` put back after).
fn binaries(opts: &RunOptions, shas: &[String]) -> Result<Vec<PathBuf>, GateError> {
    let b = &opts.binaries;
    let snapshot = ReleaseSnapshot::take(&b.target_dir)?;
    let built: Result<Vec<PathBuf>, _> = shas
        .iter()
        .map(|sha| baseline_binary(&b.repo, &b.target_dir, sha, &mut |l| log(l)))
        .collect();
    snapshot.restore()?;
    Ok(built?)
}

/// Runs `rounds` passes over the commits, alternating direction; returns
/// each commit's rounds.
fn run_passes(
    opts: &RunOptions,
    loadgen: &Path,
    bins: &[PathBuf],
    shas: &[String],
    rounds: usize,
) -> Result<Vec<Vec<Round>>, AbError> {
    let mut per_commit = vec![Vec::new(); bins.len()];
    let mut order = 0;
    for pass in 0..rounds {
        let mut idx: Vec<usize> = (0..bins.len()).collect();
        if pass % 2 == 1 {
            idx.reverse();
        }
        for k in idx {
            log(&format!(
                "trend round {}/{}: {}",
                order + 1,
                rounds * bins.len(),
                &shas[k][..12.min(shas[k].len())]
            ));
            let spec = RoundSpec {
                loadgen: loadgen.to_owned(),
                profile: opts.binaries.repo.join(&opts.profile),
                baseline_rtmc: bins[k].clone(),
                candidate_rtmc: bins[k].clone(),
                inject_delay_us: None,
                inject_cpu_pct: None,
                warmup_rounds: 0,
                timeout: opts.round_timeout,
            };
            let slot = Slot {
                order,
                pair: pass,
                side: Side::Baseline,
            };
            let dir = opts
                .out
                .join("rounds")
                .join(&shas[k][..12.min(shas[k].len())])
                .join(format!("round-{:02}", pass + 1));
            per_commit[k].push(run_round_in(&spec, &dir, &slot)?);
            order += 1;
        }
    }
    Ok(per_commit)
}

/// Per metric, each commit's median and its ratio to the first commit's.
fn summarise(
    cfg: &BaselineConfig,
    infos: Vec<CommitInfo>,
    rounds: &[Vec<Round>],
) -> Vec<TrendPoint> {
    let values = |rs: &[Round], m: Metric| -> Option<Vec<f64>> {
        rs.iter()
            .all(|r| r.has(m))
            .then(|| rs.iter().map(|r| r.value(m)).collect())
    };
    infos
        .into_iter()
        .zip(rounds)
        .map(|(commit, rs)| {
            let metrics = Metric::ALL
                .into_iter()
                .filter_map(|m| {
                    let first = values(&rounds[0], m)?;
                    let these = values(rs, m)?;
                    let seed = cfg.bootstrap.seed ^ m.index();
                    Some((
                        m,
                        median(&these),
                        ratio_of_medians(&first, &these, &cfg.bootstrap, seed),
                    ))
                })
                .collect();
            TrendPoint {
                commit,
                metrics,
                round_dirs: rs.iter().map(|r| r.dir.clone()).collect(),
            }
        })
        .collect()
}

/// `gate trend`: measures the last `commits` landed commits of `landed`
/// that changed measured code, `rounds` rounds each, and writes `trend.md`,
/// `trend.svg` and `trend.json` into `opts.out`.
pub fn run_trend(
    cfg: &BaselineConfig,
    opts: &RunOptions,
    landed: &str,
    commits: usize,
    rounds: usize,
) -> Result<TrendReport, GateError> {
    let repo = &opts.binaries.repo;
    let shas = measured_commits(repo, landed, commits)?;
    log(&format!(
        "trend over {} commits of {landed} that changed {}",
        shas.len(),
        RTMC_SOURCES.join(", ")
    ));
    let infos = shas
        .iter()
        .map(|s| commit_info(repo, s))
        .collect::<Result<Vec<_>, _>>()?;
    let bins = binaries(opts, &shas)?;
    let loadgen = opts
        .binaries
        .loadgen
        .clone()
        .unwrap_or_else(|| opts.binaries.target_dir.join("release").join("loadgen"));
    let per_commit = run_passes(opts, &loadgen, &bins, &shas, rounds)?;
    let report = TrendReport {
        points: summarise(cfg, infos, &per_commit),
        rounds_per_commit: rounds,
        profile: opts.profile.clone(),
    };
    write_files(&opts.out, &report)?;
    Ok(report)
}

/// The markdown table: a row per commit, a column per metric.
pub fn render_markdown(r: &TrendReport) -> String {
    let mut out = format!(
        "## Trend over {} landed commits ({} rounds each, interleaved)\n\nEach cell: the median of the commit's rounds, then its ratio to the oldest commit's median with the bootstrap interval.\n\n| # | commit | date | subject |",
        r.points.len(),
        r.rounds_per_commit
    );
    for m in Metric::ALL {
        let _ = write!(out, " {} |", m.label());
    }
    let _ = write!(out, "\n|{}\n", "---|".repeat(4 + Metric::ALL.len()));
    for (k, p) in r.points.iter().enumerate() {
        let c = &p.commit;
        let _ = write!(
            out,
            "| {} | `{}` | {} | {} |",
            k + 1,
            c.sha.get(..10).unwrap_or(&c.sha),
            c.date.get(..10).unwrap_or(&c.date),
            c.subject.replace('|', "/")
        );
        for m in Metric::ALL {
            match p.metrics.iter().find(|(x, _, _)| *x == m) {
                Some((_, v, e)) => {
                    let _ = write!(
                        out,
                        " {v:.3} ({:.3} [{:.3}, {:.3}]) |",
                        e.ratio, e.ci.lo, e.ci.hi
                    );
                }
                None => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out
}

/// One panel per metric: x = commit order, y = ratio to the oldest commit,
/// a bar for the interval.
pub fn trend_plot(path: &Path, r: &TrendReport) -> PlotResult {
    let root = SVGBackend::new(path, (1750, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "gate trend: each commit's median / the oldest commit's, with its 95% interval",
        ("sans-serif", 18),
    )?;
    let n = r.points.len().max(1) as f64;
    for (panel, metric) in root.split_evenly((2, 5)).iter().zip(Metric::ALL) {
        let pts: Vec<(f64, &RatioEstimate)> = r
            .points
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                let (_, _, e) = p.metrics.iter().find(|(m, _, _)| *m == metric)?;
                Some(((k + 1) as f64, e))
            })
            .collect();
        let bound = |f: fn(&RatioEstimate) -> f64| {
            pts.iter().map(move |(_, e)| f(e)).filter(|v| v.is_finite())
        };
        let lo = bound(|e| e.ci.lo).fold(1.0f64, f64::min) * 0.95;
        let hi = bound(|e| e.ci.hi).fold(1.0f64, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(panel)
            .caption(metric.label(), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5..n + 0.5, lo..hi)?;
        chart
            .configure_mesh()
            .x_labels(r.points.len().max(1))
            .draw()?;
        chart.draw_series(LineSeries::new(
            pts.iter().map(|(x, e)| (*x, e.ratio)),
            BLUE,
        ))?;
        chart.draw_series(pts.iter().map(|(x, e)| {
            PathElement::new(vec![(*x, e.ci.lo), (*x, e.ci.hi)], BLUE.stroke_width(2))
        }))?;
        chart.draw_series(
            pts.iter()
                .map(|(x, e)| Circle::new((*x, e.ratio), 4, BLUE.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}

fn write_files(dir: &Path, r: &TrendReport) -> Result<(), GateError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| GateError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let md = dir.join("trend.md");
    std::fs::write(&md, render_markdown(r)).map_err(io(&md))?;
    let json = dir.join("trend.json");
    let text = serde_json::to_string_pretty(r).unwrap_or_default();
    std::fs::write(&json, text).map_err(io(&json))?;
    if let Err(e) = trend_plot(&dir.join("trend.svg"), r) {
        log(&format!("trend.svg skipped: {e}"));
    }
    Ok(())
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
