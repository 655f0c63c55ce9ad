//! The A/A report: the spread table, `aa-report.md`, `aa.json` and the
//! suggested thresholds as a `baseline.toml` fragment.

use std::fmt::Write as _;

use super::*;

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

pub(super) fn toml_string(s: &str) -> String {
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
