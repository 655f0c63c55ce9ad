//! `gate-report.md`: the pull-request report (setup, table, every metric's
//! reason, the method, the rounds, the spectra).

use std::fmt::Write as _;

use super::*;

pub(super) fn markdown_instructions(out: &mut String, i: &InstructionReport) {
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

pub(super) fn markdown_header(out: &mut String, r: &GateReport) {
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

pub(super) fn markdown_table(out: &mut String, r: &GateReport) {
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

pub(super) fn markdown_method(out: &mut String, r: &GateReport) {
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

pub(super) fn markdown_rounds(out: &mut String, r: &GateReport) {
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

pub(super) fn order_letters(r: &GateReport) -> String {
    let mut rounds: Vec<&RoundSummary> = r.rounds.iter().collect();
    rounds.sort_by_key(|x| x.order);
    rounds.iter().map(|x| x.side.letter()).collect()
}
