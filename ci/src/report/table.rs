//! The gate's tables as text: the latency table with its headline (stdout
//! and `gate-report.txt`) and the instruction-count table.

use std::fmt::Write as _;

use super::*;

pub(super) fn change(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{:+.1}%", 100.0 * (ratio - 1.0))
    } else {
        "n/a".into()
    }
}

pub(super) fn ci(e: &RatioEstimate) -> String {
    format!("[{}, {}]", change(e.ci.lo), change(e.ci.hi))
}

pub(super) fn value(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn verdict_word(v: MetricVerdict) -> &'static str {
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
pub(super) fn rows(r: &GateReport) -> Vec<[String; 10]> {
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

pub(super) const HEADERS: [&str; 10] = [
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
pub(super) fn aligned<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
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

pub(super) fn latency_table(out: &mut String, r: &GateReport) {
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

pub(super) fn count(v: Option<u64>) -> String {
    v.map_or("—".into(), |n| n.to_string())
}

pub(super) fn instruction_rows(i: &InstructionReport) -> Vec<[String; 5]> {
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

pub(super) const INSTRUCTION_HEADERS: [&str; 5] =
    ["bench", "baseline (A)", "candidate (B)", "B/A", "verdict"];

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
