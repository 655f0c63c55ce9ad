//! The decision: per metric, is the candidate's change a regression beyond
//! the threshold that the rounds agree on and the control does not explain —
//! and for the whole gate, pass, regression or error (exit 0, 1, 2).
//!
//! A metric fails only when all of these hold (design.md §9, rules 2–6):
//! 1. the raw interval lies wholly beyond the threshold in the bad direction
//!    (latency: lower bound > 1 + t; throughput: upper bound < 1 − t);
//! 2. at least `agreement_frac` of the A/B pairs moved in the bad direction;
//! 3. the control (the floor phase) did not move between the sides — its
//!    own interval contains 1 — or, when it did, the control-corrected ratio
//!    (rtmc ÷ floor per round) also passes 1 and 2.
//!
//! A raw failure the correction explains is reported as machine drift, not
//! a regression; a corrected failure with no raw one (the control got
//! faster on the candidate's side) is reported as inconclusive. Neither
//! fails the build: the gate is built to have no false alarms.

use serde::{Deserialize, Serialize};

use crate::compare::{MetricComparison, RatioEstimate};
use crate::metric::{Better, Metric};

/// The thresholds and agreement level for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Minimum effect, as a fraction (0.10 = 10%).
    pub threshold_frac: f64,
    /// Share of A/B pairs that must move in the bad direction (0.8).
    pub agreement_frac: f64,
    /// The threshold is a placeholder, not yet set from A/A runs.
    #[serde(default)]
    pub placeholder: bool,
}

/// What one metric did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricVerdict {
    /// Nothing beyond the threshold.
    NoRegression,
    /// Worse beyond the threshold, rounds agree, not the machine: fails.
    Regression,
    /// Better beyond the threshold, rounds agree.
    Improvement,
    /// rtmc moved beyond the threshold, but so did the control, and rtmc ÷
    /// floor did not: the machine, not the code.
    MachineDrift,
    /// rtmc ÷ floor moved beyond the threshold but rtmc itself did not: the
    /// control moved; re-run.
    Inconclusive,
    /// The gate could not judge any metric (too few rounds, a baseline
    /// round failed): the values are shown, the verdict is the gate's ERROR.
    NotJudged,
}

impl MetricVerdict {
    pub fn fails(self) -> bool {
        self == MetricVerdict::Regression
    }
}

/// The verdict on one metric with its reason in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricJudgement {
    pub metric: Metric,
    pub verdict: MetricVerdict,
    pub rule: Rule,
    /// Share of pairs that moved in the bad direction (raw).
    pub raw_agreement_frac: f64,
    /// The same for the control-corrected ratios.
    pub corrected_agreement_frac: Option<f64>,
    /// The control's interval excludes 1.
    pub control_moved: bool,
    /// One line for the table and the PR.
    pub reason: String,
}

/// Where an interval lies relative to ±threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Worse,
    Better,
    Within,
}

fn side_of(e: &RatioEstimate, better: Better, t: f64) -> Side {
    let (worse, improved) = match better {
        Better::Lower => (e.ci.lo > 1.0 + t, e.ci.hi < 1.0 - t),
        Better::Higher => (e.ci.hi < 1.0 - t, e.ci.lo > 1.0 + t),
    };
    if worse {
        Side::Worse
    } else if improved {
        Side::Better
    } else {
        Side::Within
    }
}

/// Share of pair ratios on the `worse` (or better) side of 1.
pub fn agreement(pairs: &[f64], better: Better, worse: bool) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let bad = |r: f64| match better {
        Better::Lower => r > 1.0,
        Better::Higher => r < 1.0,
    };
    let n = pairs
        .iter()
        .filter(|r| bad(**r) == worse && **r != 1.0)
        .count();
    n as f64 / pairs.len() as f64
}

fn pct(ratio: f64) -> String {
    format!("{:+.1}%", 100.0 * (ratio - 1.0))
}

fn ci_pct(e: &RatioEstimate) -> String {
    format!("{} [{}, {}]", pct(e.ratio), pct(e.ci.lo), pct(e.ci.hi))
}

/// The facts the rule looks at for one metric.
#[derive(Debug, Clone, Copy)]
struct Evidence {
    raw_side: Side,
    /// Share of pairs worse / better (raw).
    raw_worse: f64,
    raw_better: f64,
    raw_fails: bool,
    raw_improves: bool,
    control_moved: bool,
    corrected_agreement: Option<f64>,
    corrected_fails: bool,
}

fn evidence(cmp: &MetricComparison, rule: Rule) -> Evidence {
    let better = cmp.metric.better();
    let t = rule.threshold_frac;
    let raw_side = side_of(&cmp.raw, better, t);
    let raw_worse = agreement(&cmp.raw_pairs, better, true);
    let raw_better = agreement(&cmp.raw_pairs, better, false);
    let corrected_agreement = cmp
        .corrected_pairs
        .as_deref()
        .map(|p| agreement(p, better, true));
    let corrected_fails = match (&cmp.corrected, corrected_agreement) {
        (Some(e), Some(a)) => side_of(e, better, t) == Side::Worse && a >= rule.agreement_frac,
        _ => false,
    };
    Evidence {
        raw_side,
        raw_worse,
        raw_better,
        raw_fails: raw_side == Side::Worse && raw_worse >= rule.agreement_frac,
        raw_improves: raw_side == Side::Better && raw_better >= rule.agreement_frac,
        control_moved: cmp.control.is_some_and(|c| c.ci.excludes_one()),
        corrected_agreement,
        corrected_fails,
    }
}

/// The rule itself (module docs).
fn classify(e: &Evidence) -> MetricVerdict {
    if e.raw_fails && (!e.control_moved || e.corrected_fails) {
        MetricVerdict::Regression
    } else if e.raw_fails {
        MetricVerdict::MachineDrift
    } else if e.corrected_fails && e.control_moved {
        MetricVerdict::Inconclusive
    } else if e.raw_improves {
        MetricVerdict::Improvement
    } else {
        MetricVerdict::NoRegression
    }
}

/// The verdict in one line, with the numbers behind it.
fn reason(cmp: &MetricComparison, rule: Rule, e: &Evidence, verdict: MetricVerdict) -> String {
    let n = cmp.raw_pairs.len();
    let pairs = |frac: f64| format!("{}/{n} pairs", (frac * n as f64).round() as usize);
    let band = format!("±{:.0}%", 100.0 * rule.threshold_frac);
    let raw = ci_pct(&cmp.raw);
    let control = cmp
        .control
        .map(|c| format!("control (floor) {}", ci_pct(&c)))
        .unwrap_or_default();
    match verdict {
        MetricVerdict::Regression => {
            let corrected = cmp
                .corrected
                .map(|c| format!("; vs floor {}", ci_pct(&c)))
                .unwrap_or_default();
            format!(
                "REGRESSION {raw} beyond {band}, {}{corrected}",
                pairs(e.raw_worse)
            )
        }
        MetricVerdict::MachineDrift => format!(
            "moved {raw} but the {control} moved too and rtmc ÷ floor did not: the machine, not the code"
        ),
        MetricVerdict::Inconclusive => format!(
            "rtmc ÷ floor moved beyond {band} but rtmc did not ({raw}); the {control} moved: re-run"
        ),
        MetricVerdict::Improvement => {
            format!("improved {raw} beyond {band}, {}", pairs(e.raw_better))
        }
        MetricVerdict::NotJudged => format!("not judged: B/A {raw}"),
        MetricVerdict::NoRegression => {
            let why = if e.raw_side == Side::Worse {
                format!(" (interval beyond it, but only {} agree)", pairs(e.raw_worse))
            } else {
                String::new()
            };
            format!("no regression detected at {band}: {raw}{why}")
        }
    }
}

/// Judges one metric (see the module docs for the rule).
pub fn judge(cmp: &MetricComparison, rule: Rule) -> MetricJudgement {
    let e = evidence(cmp, rule);
    let verdict = classify(&e);
    MetricJudgement {
        metric: cmp.metric,
        verdict,
        rule,
        raw_agreement_frac: e.raw_worse,
        corrected_agreement_frac: e.corrected_agreement,
        control_moved: e.control_moved,
        reason: reason(cmp, rule, &e, verdict),
    }
}

/// The whole gate's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// No metric regressed beyond its threshold.
    Pass,
    /// A metric regressed, or a candidate round failed loadgen's checks.
    Regression,
    /// The gate could not judge (a baseline round failed, too few rounds…).
    Error,
}

impl GateVerdict {
    /// 0 pass, 1 regression, 2 error.
    pub fn exit_code(self) -> u8 {
        match self {
            GateVerdict::Pass => 0,
            GateVerdict::Regression => 1,
            GateVerdict::Error => 2,
        }
    }
}

impl MetricJudgement {
    /// The same judgement withdrawn, since the gate could not judge (`why`);
    /// the reason keeps the measured change.
    pub fn not_judged(mut self, cmp: &MetricComparison, why: &str) -> Self {
        self.verdict = MetricVerdict::NotJudged;
        self.reason = format!("not judged ({why}): B/A {}", ci_pct(&cmp.raw));
        self
    }
}

/// Combines the metric judgements and the rounds' own failures.
impl MetricJudgement {
    /// Whether this metric fails the gate: a regression at a threshold set
    /// from A/A runs. A placeholder threshold (design.md §9: thresholds come
    /// from measured A/A noise) reports its verdict but does not fail.
    pub fn gates_and_fails(&self) -> bool {
        self.verdict.fails() && !self.rule.placeholder
    }
}

pub fn overall(
    judgements: &[MetricJudgement],
    baseline_failures: &[String],
    candidate_failures: &[String],
) -> GateVerdict {
    if !baseline_failures.is_empty() {
        GateVerdict::Error
    } else if !candidate_failures.is_empty()
        || judgements.iter().any(MetricJudgement::gates_and_fails)
    {
        GateVerdict::Regression
    } else {
        GateVerdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::RatioInterval;

    fn est(ratio: f64, lo: f64, hi: f64) -> RatioEstimate {
        RatioEstimate {
            ratio,
            ci: RatioInterval { lo, hi },
        }
    }

    fn cmp(metric: Metric, raw: RatioEstimate, pairs: Vec<f64>) -> MetricComparison {
        MetricComparison {
            metric,
            baseline_values: vec![],
            candidate_values: vec![],
            baseline_median: 1.0,
            candidate_median: raw.ratio,
            raw,
            raw_pairs: pairs,
            control: Some(est(1.0, 0.97, 1.03)),
            corrected: None,
            corrected_pairs: None,
        }
    }

    const RULE: Rule = Rule {
        threshold_frac: 0.05,
        agreement_frac: 0.8,
        placeholder: false,
    };

    #[test]
    fn an_interval_beyond_the_threshold_with_agreeing_pairs_fails() {
        let c = cmp(Metric::RecvP99, est(1.2, 1.1, 1.3), vec![1.2, 1.15, 1.25]);
        let j = judge(&c, RULE);
        assert_eq!(j.verdict, MetricVerdict::Regression, "{}", j.reason);
        assert!(j.reason.starts_with("REGRESSION +20.0%"), "{}", j.reason);
    }

    #[test]
    fn disagreeing_pairs_do_not_fail_however_far_the_interval() {
        // 2 of 3 pairs (67%) < 80%.
        let c = cmp(Metric::RecvP99, est(1.2, 1.1, 1.3), vec![1.2, 1.3, 0.9]);
        let j = judge(&c, RULE);
        assert_eq!(j.verdict, MetricVerdict::NoRegression, "{}", j.reason);
        assert!(j.reason.contains("only 2/3 pairs agree"), "{}", j.reason);
        // 4 of 5 (80%) is enough.
        let c = cmp(
            Metric::RecvP99,
            est(1.2, 1.1, 1.3),
            vec![1.2, 1.3, 0.9, 1.2, 1.2],
        );
        assert_eq!(judge(&c, RULE).verdict, MetricVerdict::Regression);
    }

    #[test]
    fn a_point_beyond_but_an_interval_touching_the_threshold_passes() {
        let c = cmp(Metric::RecvP50, est(1.2, 1.04, 1.4), vec![1.2; 3]);
        let j = judge(&c, RULE);
        assert_eq!(j.verdict, MetricVerdict::NoRegression);
        assert_eq!(
            j.reason,
            "no regression detected at ±5%: +20.0% [+4.0%, +40.0%]"
        );
    }

    #[test]
    fn throughput_fails_downwards_and_improves_upwards() {
        let down = cmp(Metric::DeliveriesPerSec, est(0.8, 0.75, 0.85), vec![0.8; 3]);
        assert_eq!(judge(&down, RULE).verdict, MetricVerdict::Regression);
        let up = cmp(Metric::DeliveriesPerSec, est(1.2, 1.15, 1.25), vec![1.2; 3]);
        assert_eq!(judge(&up, RULE).verdict, MetricVerdict::Improvement);
        // The same interval on a latency is the other way round.
        let lat_down = cmp(Metric::AckP99, est(0.8, 0.75, 0.85), vec![0.8; 3]);
        assert_eq!(judge(&lat_down, RULE).verdict, MetricVerdict::Improvement);
    }

    #[test]
    fn a_shift_the_control_explains_is_machine_drift() {
        let mut c = cmp(Metric::RecvP99, est(1.3, 1.2, 1.4), vec![1.3; 3]);
        c.control = Some(est(1.3, 1.2, 1.4));
        c.corrected = Some(est(1.0, 0.95, 1.05));
        c.corrected_pairs = Some(vec![1.0, 1.01, 0.99]);
        let j = judge(&c, RULE);
        assert_eq!(j.verdict, MetricVerdict::MachineDrift, "{}", j.reason);
        assert!(j.control_moved);
        // …unless rtmc ÷ floor regressed too.
        c.corrected = Some(est(1.2, 1.1, 1.3));
        c.corrected_pairs = Some(vec![1.2; 3]);
        assert_eq!(judge(&c, RULE).verdict, MetricVerdict::Regression);
    }

    #[test]
    fn a_corrected_shift_without_a_raw_one_is_inconclusive() {
        let mut c = cmp(Metric::RecvP99, est(1.0, 0.95, 1.05), vec![1.0; 3]);
        c.control = Some(est(0.8, 0.75, 0.85));
        c.corrected = Some(est(1.25, 1.2, 1.3));
        c.corrected_pairs = Some(vec![1.25; 3]);
        assert_eq!(judge(&c, RULE).verdict, MetricVerdict::Inconclusive);
    }

    #[test]
    fn the_overall_verdict_and_exit_codes() {
        let j = |v| MetricJudgement {
            metric: Metric::RecvP50,
            verdict: v,
            rule: RULE,
            raw_agreement_frac: 0.0,
            corrected_agreement_frac: None,
            control_moved: false,
            reason: String::new(),
        };
        let pass = [
            j(MetricVerdict::NoRegression),
            j(MetricVerdict::MachineDrift),
        ];
        assert_eq!(overall(&pass, &[], &[]), GateVerdict::Pass);
        assert_eq!(
            overall(&pass, &[], &["LOSS".into()]),
            GateVerdict::Regression
        );
        assert_eq!(overall(&pass, &["LOSS".into()], &[]), GateVerdict::Error);
        let fail = [j(MetricVerdict::Regression)];
        assert_eq!(overall(&fail, &[], &[]).exit_code(), 1);
        assert_eq!(GateVerdict::Pass.exit_code(), 0);
        assert_eq!(GateVerdict::Error.exit_code(), 2);
        // A regression at a placeholder threshold is reported, not gating.
        let mut placeholder = j(MetricVerdict::Regression);
        placeholder.rule.placeholder = true;
        assert!(placeholder.verdict.fails() && !placeholder.gates_and_fails());
        assert_eq!(overall(&[placeholder], &[], &[]), GateVerdict::Pass);
    }
}
