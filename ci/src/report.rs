//! What the gate tells people: the table on stdout, the pull-request report
//! (`gate-report.md`), the machine-readable `gate.json`, and `rounds.svg`
//! (every round's value per metric, A and B, with the floor as the control);
//! for `--aa`, the spread table, `aa-report.md`, `aa.json` and the suggested
//! thresholds as a `baseline.toml` fragment.
//!
//! Wording is deliberately modest: a pass says "no regression detected at
//! ±X%", never "no regression".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use rtmc_loadgen::report::plots::PlotResult;
use serde::{Deserialize, Serialize};

use crate::compare::{AaSpread, BootstrapConfig, MetricComparison, RatioEstimate};
use crate::instructions::{BenchComparison, InstructionReport};
use crate::metric::Metric;
pub use crate::round::RoundSummary;
use crate::round::Side;
use crate::spectra;
use crate::verdict::{GateVerdict, MetricJudgement, MetricVerdict};

use crate::round::lookup;

/// Where the numbers came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateSetup {
    /// `run`, `aa` or `compare`.
    pub mode: String,
    pub generated_at: String,
    pub baseline_commit: Option<String>,
    pub candidate_commit: Option<String>,
    pub baseline_rtmc: Option<PathBuf>,
    pub candidate_rtmc: Option<PathBuf>,
    pub loadgen: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    pub inject_delay_us: Option<u64>,
    pub thresholds_measured_by: String,
    /// The landed commit measured against, as a person reads it (sha, date,
    /// subject), with which change pinned it (the pin check).
    #[serde(default)]
    pub baseline_landed: Option<String>,
    /// `RTMC_TEST_FANOUT_CPU_PCT` given to the candidate side, if any.
    #[serde(default)]
    pub inject_cpu_pct: Option<u64>,
}

/// `gate.json`: everything one judgement used and concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub setup: GateSetup,
    pub bootstrap: BootstrapConfig,
    pub agreement_frac: f64,
    pub rounds: Vec<RoundSummary>,
    pub comparisons: Vec<MetricComparison>,
    pub judgements: Vec<MetricJudgement>,
    pub baseline_failures: Vec<String>,
    pub candidate_failures: Vec<String>,
    /// The instruction-count check; absent when it was skipped
    /// (`--no-instructions`, `--compare`, A/A).
    #[serde(default)]
    pub instructions: Option<InstructionReport>,
    /// Why the gate could not judge, besides failed rounds (too few rounds).
    #[serde(default)]
    pub notes: Vec<String>,
    pub verdict: GateVerdict,
}

fn change(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{:+.1}%", 100.0 * (ratio - 1.0))
    } else {
        "n/a".into()
    }
}

fn ci(e: &RatioEstimate) -> String {
    format!("[{}, {}]", change(e.ci.lo), change(e.ci.hi))
}

fn value(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn verdict_word(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::NoRegression => "ok",
        MetricVerdict::Regression => "REGRESSION",
        MetricVerdict::Improvement => "improved",
        MetricVerdict::MachineDrift => "machine drift",
        MetricVerdict::Inconclusive => "inconclusive",
        MetricVerdict::NotJudged => "not judged",
    }
}

/// One table row per metric: cells in column order.
fn rows(r: &GateReport) -> Vec<[String; 10]> {
    r.comparisons
        .iter()
        .zip(&r.judgements)
        .map(|(c, j)| {
            let n = c.raw_pairs.len();
            [
                c.metric.label().to_owned(),
                value(c.baseline_median),
                value(c.candidate_median),
                change(c.raw.ratio),
                ci(&c.raw),
                c.corrected
                    .map_or("n/a".into(), |e| format!("{} {}", change(e.ratio), ci(&e))),
                c.control.map_or("n/a".into(), |e| change(e.ratio)),
                format!(
                    "±{:.0}%{}",
                    100.0 * j.rule.threshold_frac,
                    if j.rule.placeholder {
                        " (placeholder: reported, not gating)"
                    } else {
                        ""
                    }
                ),
                format!("{}/{n}", (j.raw_agreement_frac * n as f64).round() as usize),
                verdict_word(j.verdict).to_owned(),
            ]
        })
        .collect()
}

const HEADERS: [&str; 10] = [
    "metric",
    "baseline (A)",
    "candidate (B)",
    "B/A",
    "CI",
    "B/A vs floor",
    "control",
    "threshold",
    "pairs worse",
    "verdict",
];

/// The headline: what a reviewer needs first.
pub fn headline(r: &GateReport) -> String {
    let failing: Vec<String> = r
        .judgements
        .iter()
        .filter(|j| j.gates_and_fails())
        .map(|j| j.metric.key().to_owned())
        .chain(
            r.instructions
                .iter()
                .flat_map(|i| i.regressed())
                .map(|b| format!("instructions {}", b.bench)),
        )
        .collect();
    match r.verdict {
        GateVerdict::Pass if r.rounds.is_empty() => {
            "PASS — no instruction count grew beyond its threshold (latency rounds not run)".into()
        }
        GateVerdict::Pass => {
            "PASS — no regression detected at the thresholds below (rounds interleaved, bootstrap intervals)".into()
        }
        GateVerdict::Regression if failing.is_empty() => format!(
            "REGRESSION — candidate rounds failed loadgen's checks: {}",
            r.candidate_failures.join("; ")
        ),
        GateVerdict::Regression => format!("REGRESSION — {}", failing.join(", ")),
        GateVerdict::Error if r.baseline_failures.is_empty() => {
            format!("ERROR — {}", r.notes.join("; "))
        }
        GateVerdict::Error => format!(
            "ERROR — baseline rounds failed loadgen's checks, nothing can be judged: {}",
            r.baseline_failures.join("; ")
        ),
    }
}

/// A plain-text table: the first and last column left-aligned, the others
/// right-aligned, two spaces between columns.
fn aligned<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if k == 0 || k == N - 1 {
                let _ = write!(s, "{cell}{pad}  ");
            } else {
                let _ = write!(s, "{pad}{cell}  ");
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&headers.map(String::from));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// The stdout table.
pub fn render_table(r: &GateReport) -> String {
    let mut out = String::new();
    if let Some(landed) = &r.setup.baseline_landed {
        let _ = writeln!(out, "baseline: the landed commit {landed}");
    }
    if !r.rounds.is_empty() {
        latency_table(&mut out, r);
    }
    if let Some(i) = &r.instructions {
        out.push_str(&render_instructions(i));
    }
    let _ = writeln!(out, "RESULT: {}", headline(r));
    out
}

fn latency_table(out: &mut String, r: &GateReport) {
    let pct = 100.0 * r.bootstrap.confidence;
    let _ = writeln!(
        out,
        "latency gate: {} rounds ({} pairs, A = baseline, B = candidate), {pct:.0}% bootstrap intervals of median(B)/median(A)",
        r.rounds.len(),
        r.comparisons.first().map_or(0, |c| c.raw_pairs.len())
    );
    out.push_str(&aligned(HEADERS, &rows(r)));
    for j in &r.judgements {
        if j.verdict != MetricVerdict::NoRegression {
            let _ = writeln!(out, "  {}: {}", j.metric.key(), j.reason);
        }
    }
    for f in r.baseline_failures.iter().chain(&r.candidate_failures) {
        let _ = writeln!(out, "  round failed: {f}");
    }
}

fn count(v: Option<u64>) -> String {
    v.map_or("—".into(), |n| n.to_string())
}

fn instruction_rows(i: &InstructionReport) -> Vec<[String; 5]> {
    i.benches
        .iter()
        .map(|b: &BenchComparison| {
            [
                b.bench.clone(),
                count(b.baseline),
                count(b.candidate),
                b.ratio.map_or("n/a".into(), change),
                b.verdict.word().to_owned(),
            ]
        })
        .collect()
}

const INSTRUCTION_HEADERS: [&str; 5] = ["bench", "baseline (A)", "candidate (B)", "B/A", "verdict"];

/// The instruction-count table (stdout).
pub fn render_instructions(i: &InstructionReport) -> String {
    let mut out = String::new();
    let features = if i.candidate_features.is_empty() {
        String::new()
    } else {
        format!(
            ", candidate built with --features {}",
            i.candidate_features.join(",")
        )
    };
    let _ = writeln!(
        out,
        "instruction counts (callgrind Ir, one run per side, fails beyond +{:.1}%{features})",
        i.threshold_pct
    );
    if let Some(why) = &i.skipped {
        let _ = writeln!(out, "  {why}");
        return out;
    }
    out.push_str(&aligned(INSTRUCTION_HEADERS, &instruction_rows(i)));
    out
}

fn markdown_instructions(out: &mut String, i: &InstructionReport) {
    let _ = writeln!(
        out,
        "\n### Instruction counts\n\ncallgrind's instruction count (Ir) of each CPU-bound bench (`benches/benches/instructions.rs`), one run per side, both built from the same source path with one codegen unit; a bench fails beyond **+{:.1}%**.",
        i.threshold_pct
    );
    if !i.candidate_features.is_empty() {
        let _ = writeln!(
            out,
            "\nThe candidate's benches were built with `--features {}` (a test-only switch).",
            i.candidate_features.join(",")
        );
    }
    if let Some(why) = &i.skipped {
        let _ = writeln!(out, "\nInstruction counts {why}.");
        return;
    }
    let _ = writeln!(out, "\n| {} |", INSTRUCTION_HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(INSTRUCTION_HEADERS.len()));
    for row in instruction_rows(i) {
        let mut cells = row.clone();
        if cells[4] == "REGRESSION" {
            cells[4] = "**REGRESSION**".into();
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// The pull-request report, without the spectra (no files read).
pub fn render_markdown(r: &GateReport) -> String {
    render_markdown_with(r, None)
}

/// The pull-request report; `views` adds the pooled percentile spectra of
/// both sides after the verdict table.
pub fn render_markdown_with(r: &GateReport, views: Option<&spectra::Views>) -> String {
    let mut out = String::new();
    markdown_header(&mut out, r);
    if !r.rounds.is_empty() {
        markdown_table(&mut out, r);
        markdown_method(&mut out, r);
    }
    if let Some(v) = views {
        out.push_str(&spectra::markdown(v));
    }
    if let Some(i) = &r.instructions {
        markdown_instructions(&mut out, i);
    }
    if !r.rounds.is_empty() {
        markdown_rounds(&mut out, r);
    }
    out
}

fn markdown_header(out: &mut String, r: &GateReport) {
    let s = &r.setup;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let profile = s
        .profile
        .as_ref()
        .map_or("—".into(), |p| p.display().to_string());
    let _ = writeln!(out, "## Latency gate: {}\n", headline(r));
    let _ = writeln!(
        out,
        "Baseline (A) `{}` · candidate (B) `{}` · profile `{profile}` · {} rounds in the order {} · {}",
        opt(&s.baseline_commit),
        opt(&s.candidate_commit),
        r.rounds.len(),
        order_letters(r),
        s.generated_at
    );
    if let Some(landed) = &s.baseline_landed {
        let _ = writeln!(out, "\nMeasured against the landed commit {landed}.");
    }
    if let Some(pct) = s.inject_cpu_pct {
        let _ = writeln!(
            out,
            "\nThe candidate ran with `RTMC_TEST_FANOUT_CPU_PCT={pct}` (injected CPU work per delivery: this run checks that the gate catches it)."
        );
    }
    if let Some(us) = s.inject_delay_us {
        let _ = writeln!(
            out,
            "\nThe candidate ran with `RTMC_TEST_BROADCAST_DELAY_US={us}` (an injected delay: this run checks that the gate catches it)."
        );
    }
}

fn markdown_table(out: &mut String, r: &GateReport) {
    let _ = writeln!(out, "\n| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for (row, j) in rows(r).iter().zip(&r.judgements) {
        let mut cells = row.clone();
        if j.verdict.fails() {
            cells[9] = format!("**{}**", cells[9]);
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(out);
    for j in &r.judgements {
        let _ = writeln!(out, "- `{}`: {}", j.metric.key(), j.reason);
    }
    for f in &r.baseline_failures {
        let _ = writeln!(out, "- baseline round failed: {f}");
    }
    for f in &r.candidate_failures {
        let _ = writeln!(out, "- candidate round failed: {f}");
    }
}

fn markdown_method(out: &mut String, r: &GateReport) {
    let measured_by = match r.setup.thresholds_measured_by.as_str() {
        "" => "not recorded",
        m => m,
    };
    let _ = writeln!(
        out,
        "\n**How to read this.** B/A is median(candidate rounds) ÷ median(baseline rounds); the interval is a {:.0}% percentile bootstrap over rounds ({} resamples, seed {}). \
\"vs floor\" divides each round's rtmc value by the Redis pub/sub floor measured in the same round; \"control\" is the floor's own B/A — it moves only when the machine does. \
A metric fails only when its whole interval lies beyond the threshold, at least {:.0}% of the A/B pairs moved the same way, and the control does not explain it. \
Thresholds come from A/A runs ({measured_by}).",
        100.0 * r.bootstrap.confidence,
        r.bootstrap.resamples,
        r.bootstrap.seed,
        100.0 * r.agreement_frac,
    );
}

fn markdown_rounds(out: &mut String, r: &GateReport) {
    let _ = writeln!(out, "\n<details><summary>Rounds</summary>\n");
    let _ = writeln!(
        out,
        "| # | round | recv p50 | recv p99 | recv p99.9 | ack p99 | deliveries/s | floor recv p99 | directory |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut rounds: Vec<&RoundSummary> = r.rounds.iter().collect();
    rounds.sort_by_key(|x| x.order);
    for x in rounds {
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | `{}` |",
            x.order + 1,
            x.side.letter(),
            x.pair + 1,
            value(x.value(Metric::RecvP50)),
            value(x.value(Metric::RecvP99)),
            value(x.value(Metric::RecvP99_9)),
            value(x.value(Metric::AckP99)),
            value(x.value(Metric::DeliveriesPerSec)),
            x.control(Metric::RecvP99).map_or("—".into(), value),
            x.dir.display()
        );
    }
    let _ = writeln!(out, "\n</details>\n\nPer-round values: `rounds.svg`.");
}

fn order_letters(r: &GateReport) -> String {
    let mut rounds: Vec<&RoundSummary> = r.rounds.iter().collect();
    rounds.sort_by_key(|x| x.order);
    rounds.iter().map(|x| x.side.letter()).collect()
}

/// Failure writing the report files.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {path}: {message}")]
    Write { path: PathBuf, message: String },
}

fn write(path: &Path, text: &str) -> Result<PathBuf, ReportError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::Write {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
    }
    std::fs::write(path, text).map_err(|e| ReportError::Write {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(path.to_owned())
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Writes `gate.json`, `gate-report.md`, `gate-report.txt`, `rounds.svg`,
/// and from the rounds' interval logs `spectra.svg` and `over_time.svg`,
/// into `dir`; returns the files written (a plot that fails is skipped with
/// a warning on stderr).
pub fn write_gate_files(dir: &Path, r: &GateReport) -> Result<Vec<PathBuf>, ReportError> {
    let views = (!r.rounds.is_empty()).then(|| spectra::load(&r.rounds));
    let mut files = vec![
        write(&dir.join("gate.json"), &json(r))?,
        write(
            &dir.join("gate-report.md"),
            &render_markdown_with(r, views.as_ref()),
        )?,
        write(&dir.join("gate-report.txt"), &render_table(r))?,
    ];
    let Some(views) = views else {
        return Ok(files);
    };
    let mut plot = |name: &str, f: &dyn Fn(&Path) -> PlotResult| {
        let svg = dir.join(name);
        match f(&svg) {
            Ok(()) => files.push(svg),
            Err(e) => eprintln!("gate: {name} skipped: {e}"),
        }
    };
    plot("rounds.svg", &|p| rounds_plot(p, r));
    if views.complete() {
        plot("spectra.svg", &|p| spectra::spectra_plot(p, &views));
        plot("over_time.svg", &|p| spectra::over_time_plot(p, &views));
    }
    Ok(files)
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);

/// One panel per metric: x = run order, y = value; A blue, B orange; rtmc
/// filled, the floor (control) hollow. The panel after the metrics is the
/// legend.
pub fn rounds_plot(path: &Path, r: &GateReport) -> PlotResult {
    let root = SVGBackend::new(path, (1750, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "latency gate: every round (A = baseline blue, B = candidate orange; filled = rtmc, hollow = floor)",
        ("sans-serif", 18),
    )?;
    let panels = root.split_evenly((2, 5));
    for (panel, metric) in panels.iter().zip(Metric::ALL) {
        metric_panel(panel, r, metric)?;
    }
    if let Some(panel) = panels.get(Metric::ALL.len()) {
        legend_panel(panel, r)?;
    }
    root.present()?;
    Ok(())
}

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn metric_panel(panel: &Panel, r: &GateReport, metric: Metric) -> PlotResult {
    let points = |side: Side, floor: bool| -> Vec<(f64, f64)> {
        r.rounds
            .iter()
            .filter(|x| x.side == side)
            .filter_map(|x| {
                let v = if floor {
                    x.control(metric)?
                } else {
                    x.value(metric)
                };
                Some(((x.order + 1) as f64, v))
            })
            .collect()
    };
    let y_max = r
        .rounds
        .iter()
        .flat_map(|x| std::iter::once(x.value(metric)).chain(x.control(metric)))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let n = r.rounds.len().max(1) as f64;
    let mut chart = ChartBuilder::on(panel)
        .caption(metric.label(), ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(25)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n + 0.5, 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_labels(r.rounds.len().max(1))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (side, color) in [(Side::Baseline, BLUE), (Side::Candidate, ORANGE)] {
        let rtmc = points(side, false);
        chart.draw_series(rtmc.into_iter().map(|p| Circle::new(p, 5, color.filled())))?;
        let floor = points(side, true);
        chart.draw_series(
            floor
                .into_iter()
                .map(|p| Circle::new(p, 5, color.stroke_width(2))),
        )?;
    }
    Ok(())
}

fn legend_panel(panel: &Panel, r: &GateReport) -> PlotResult {
    let lines = [
        format!("x: run order ({})", order_letters(r)),
        "filled: rtmc   hollow: Redis floor (the control)".into(),
        "blue: A = baseline   orange: B = candidate".into(),
        headline(r).chars().take(60).collect(),
    ];
    for (k, line) in lines.iter().enumerate() {
        panel.draw(&Text::new(
            line.clone(),
            (20, 60 + 28 * k as i32),
            ("sans-serif", 15),
        ))?;
    }
    Ok(())
}

/// The A/A summary (`aa.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AaReport {
    pub setup: GateSetup,
    pub repeats: usize,
    pub pairs: usize,
    pub spreads: Vec<AaSpread>,
    /// Current thresholds, percent, per metric.
    pub thresholds_pct: BTreeMap<Metric, f64>,
    /// Per metric: repeats whose verdict was a regression under the current
    /// thresholds (must be 0).
    pub false_alarms: BTreeMap<Metric, usize>,
    /// Each repeat's directory.
    pub repeat_dirs: Vec<PathBuf>,
}

impl AaReport {
    pub fn total_false_alarms(&self) -> usize {
        self.false_alarms.values().sum()
    }
}

/// The A/A table (stdout and `aa-report.md` share it).
pub fn render_aa(r: &AaReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A/A: the baseline against itself, {} repeats × {} pairs\n",
        r.repeats, r.pairs
    );
    let _ = writeln!(
        out,
        "| metric | B/A min | B/A median | B/A max | lowest CI bound | highest CI bound | widest reach | threshold now | false alarms | suggested threshold |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in &r.spreads {
        let now = lookup(&r.thresholds_pct, s.metric);
        let fa = r.false_alarms.get(&s.metric).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | ±{:.1}% | ±{now:.0}% | {fa} | ±{:.0}% |",
            s.metric.key(),
            change(s.ratio_min),
            change(s.ratio_median),
            change(s.ratio_max),
            change(s.ci_lo_min),
            change(s.ci_hi_max),
            s.widest_reach_pct,
            s.suggested_threshold_pct
        );
    }
    let _ = writeln!(
        out,
        "\nfalse alarms under the current thresholds: {} (must be 0)",
        r.total_false_alarms()
    );
    out
}

/// The `[thresholds]` table for `ci/baseline.toml` (replaces the old one).
pub fn render_thresholds_toml(r: &AaReport, measured_by: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "[thresholds]");
    let _ = writeln!(out, "measured_by = {}", toml_string(measured_by));
    let mut unmeasured = Vec::new();
    for m in Metric::ALL {
        let key = crate::baseline::threshold_key(m);
        match r.spreads.iter().find(|s| s.metric == m) {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "{key} = {:.1}   # widest A/A reach ±{:.1}%",
                    s.suggested_threshold_pct, s.widest_reach_pct
                );
            }
            // Not in these rounds (a loadgen that did not weigh the server):
            // the current threshold stays, still a placeholder.
            None => {
                let _ = writeln!(
                    out,
                    "{key} = {:.1}   # not measured by these A/A runs: kept",
                    lookup(&r.thresholds_pct, m)
                );
                unmeasured.push(toml_string(&key));
            }
        }
    }
    if !unmeasured.is_empty() {
        let _ = writeln!(out, "placeholder = [{}]", unmeasured.join(", "));
    }
    out
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Writes `aa.json`, `aa-report.md` and `aa-thresholds.toml` into `dir`.
pub fn write_aa_files(
    dir: &Path,
    r: &AaReport,
    measured_by: &str,
) -> Result<Vec<PathBuf>, ReportError> {
    Ok(vec![
        write(&dir.join("aa.json"), &json(r))?,
        write(&dir.join("aa-report.md"), &render_aa(r))?,
        write(
            &dir.join("aa-thresholds.toml"),
            &render_thresholds_toml(r, measured_by),
        )?,
    ])
}
