//! The statistics: candidate/baseline ratios of medians across rounds with
//! seeded percentile-bootstrap confidence intervals, the per-pair ratios the
//! agreement rule counts, and the A/A spread that sets the thresholds.
//!
//! The unit resampled is the round, never the one-second interval: intervals
//! of one round share its stack bring-up, its containers and the machine's
//! load during that minute, so they are not independent draws. Resampling
//! them would measure only within-round noise and make intervals too narrow
//! for the between-round drift a shared machine produces (design.md §7: the
//! same command gave p99 ratios of 0.39, 0.56 and 1.06). With few rounds the
//! percentile bootstrap of a median is coarse — at 3 rounds per side its
//! interval is the range of min(B)/max(A) … max(B)/min(A) — which is why the
//! verdict also needs the threshold and the pairs' agreement.

use serde::{Deserialize, Serialize};

// The median and the per-pair ratios are loadgen's too (its interleaved
// rounds): one implementation, in `rtmc-stats`.
pub use rtmc_stats::{median, median_in_place, pair_ratios};

use crate::metric::Metric;
use crate::round::Round;

/// How intervals are computed; fixed by `baseline.toml` so a verdict replays.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Resamples per interval.
    pub resamples: usize,
    /// Two-sided confidence level, e.g. 0.95.
    pub confidence: f64,
    /// Seed of the resampling; each metric derives its own from it.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 2000,
            confidence: 0.95,
            seed: 0x5EED_6A7E,
        }
    }
}

/// SplitMix64: a tiny, well-mixed generator whose sequence is fixed forever
/// (a crate's `StdRng` may change between versions; a gate's verdict must
/// replay from its seed).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2⁻⁵⁰ for small n).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Linear-interpolated quantile of sorted values (type 7).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// A two-sided confidence interval of a ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioInterval {
    pub lo: f64,
    pub hi: f64,
}

impl RatioInterval {
    /// True when 1 (no change) lies outside the interval.
    pub fn excludes_one(&self) -> bool {
        self.lo > 1.0 || self.hi < 1.0
    }

    /// How far the interval reaches from 1, as a fraction: the noise band an
    /// A/A comparison shows.
    pub fn reach_frac(&self) -> f64 {
        (self.hi - 1.0).max(1.0 - self.lo).max(0.0)
    }
}

/// median(B) / median(A) with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioEstimate {
    pub ratio: f64,
    pub ci: RatioInterval,
}

/// median(b) / median(a), with a percentile-bootstrap interval: each
/// resample draws `a.len()` rounds from A and `b.len()` from B with
/// replacement (the sides independently) and takes the ratio of medians.
pub fn ratio_of_medians(a: &[f64], b: &[f64], cfg: &BootstrapConfig, seed: u64) -> RatioEstimate {
    let ratio = median(b) / median(a);
    if a.is_empty() || b.is_empty() {
        return RatioEstimate {
            ratio,
            ci: RatioInterval {
                lo: f64::NAN,
                hi: f64::NAN,
            },
        };
    }
    let mut rng = SplitMix64::new(seed);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    let mut stats = Vec::with_capacity(cfg.resamples.max(1));
    for _ in 0..cfg.resamples.max(1) {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        stats.push(median_in_place(&mut rb) / median_in_place(&mut ra));
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - cfg.confidence) / 2.0;
    RatioEstimate {
        ratio,
        ci: RatioInterval {
            lo: quantile_sorted(&stats, tail),
            hi: quantile_sorted(&stats, 1.0 - tail),
        },
    }
}

/// One metric across all rounds: raw, control-corrected and the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub metric: Metric,
    /// Per round, in pair order.
    pub baseline_values: Vec<f64>,
    pub candidate_values: Vec<f64>,
    pub baseline_median: f64,
    pub candidate_median: f64,
    /// rtmc: median(B) / median(A).
    pub raw: RatioEstimate,
    /// Per pair: B / A.
    pub raw_pairs: Vec<f64>,
    /// The floor's own B/A ratio: did the machine move between the sides?
    /// None without a floor phase.
    pub control: Option<RatioEstimate>,
    /// (rtmc ÷ floor) B/A: the rtmc ratio with the machine's drift divided out.
    pub corrected: Option<RatioEstimate>,
    pub corrected_pairs: Option<Vec<f64>>,
}

/// Seeds for one metric's three intervals.
fn seeds(cfg: &BootstrapConfig, metric: Metric) -> [u64; 3] {
    let base = cfg.seed ^ metric.index().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    [base, base.wrapping_add(1), base.wrapping_add(2)]
}

/// Compares `metric` between the rounds of A (`baseline`) and B
/// (`candidate`); both slices are in pair order.
pub fn compare_metric(
    baseline: &[Round],
    candidate: &[Round],
    metric: Metric,
    cfg: &BootstrapConfig,
) -> MetricComparison {
    let values = |rs: &[Round]| rs.iter().map(|r| r.value(metric)).collect::<Vec<_>>();
    let controls = |rs: &[Round]| {
        rs.iter()
            .map(|r| r.control(metric))
            .collect::<Option<Vec<_>>>()
    };
    let corrected = |rs: &[Round]| {
        rs.iter()
            .map(|r| r.corrected(metric))
            .collect::<Option<Vec<_>>>()
    };
    let [s_raw, s_control, s_corrected] = seeds(cfg, metric);
    let (a, b) = (values(baseline), values(candidate));
    let control = match (controls(baseline), controls(candidate)) {
        (Some(ca), Some(cb)) => Some(ratio_of_medians(&ca, &cb, cfg, s_control)),
        _ => None,
    };
    let (corrected, corrected_pairs) = match (corrected(baseline), corrected(candidate)) {
        (Some(na), Some(nb)) => (
            Some(ratio_of_medians(&na, &nb, cfg, s_corrected)),
            Some(pair_ratios(&na, &nb)),
        ),
        _ => (None, None),
    };
    MetricComparison {
        metric,
        baseline_median: median(&a),
        candidate_median: median(&b),
        raw: ratio_of_medians(&a, &b, cfg, s_raw),
        raw_pairs: pair_ratios(&a, &b),
        baseline_values: a,
        candidate_values: b,
        control,
        corrected,
        corrected_pairs,
    }
}

/// Every metric, in report order; an optional metric (server CPU, memory)
/// only when every round of both sides has it.
pub fn compare_all(
    baseline: &[Round],
    candidate: &[Round],
    cfg: &BootstrapConfig,
) -> Vec<MetricComparison> {
    Metric::ALL
        .into_iter()
        .filter(|m| !m.optional() || baseline.iter().chain(candidate).all(|r| r.has(*m)))
        .map(|m| compare_metric(baseline, candidate, m, cfg))
        .collect()
}

/// The spread of one metric over repeated A/A comparisons (same binary on
/// both sides): what noise alone does to its ratio and interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AaSpread {
    pub metric: Metric,
    pub repeats: usize,
    /// Raw ratio point estimates: min, median, max.
    pub ratio_min: f64,
    pub ratio_median: f64,
    pub ratio_max: f64,
    /// Lowest lower bound and highest upper bound of the raw intervals.
    pub ci_lo_min: f64,
    pub ci_hi_max: f64,
    /// Farthest any interval (raw or corrected) reached from 1, in percent.
    pub widest_reach_pct: f64,
    /// Suggested threshold: the widest reach × `margin`, rounded up to a
    /// whole percent, at least `floor_pct`. Under it, none of these A/A
    /// intervals would even touch the threshold, let alone lie beyond it.
    pub suggested_threshold_pct: f64,
}

/// Safety factor on the widest A/A reach when suggesting a threshold.
pub const AA_MARGIN: f64 = 1.25;
/// No threshold below this, in percent (percentiles of HdrHistograms with 3
/// significant digits and open-loop schedules are not finer than that).
pub const AA_FLOOR_PCT: f64 = 2.0;

/// Summarises `repeats` (one `compare_all` per A/A repeat) per metric.
pub fn aa_spread(repeats: &[Vec<MetricComparison>]) -> Vec<AaSpread> {
    Metric::ALL
        .into_iter()
        .filter_map(|metric| {
            let runs: Vec<&MetricComparison> = repeats
                .iter()
                .filter_map(|r| r.iter().find(|c| c.metric == metric))
                .collect();
            if runs.is_empty() {
                return None;
            }
            let ratios: Vec<f64> = runs.iter().map(|c| c.raw.ratio).collect();
            let reach = runs
                .iter()
                .flat_map(|c| std::iter::once(c.raw).chain(c.corrected))
                .map(|e| e.ci.reach_frac())
                .fold(0.0, f64::max);
            // Rounded to 1e-6 first so 8% × 1.25 is 10%, not 11%.
            let suggested = ((100.0 * reach * AA_MARGIN * 1e6).round() / 1e6)
                .ceil()
                .max(AA_FLOOR_PCT);
            let spread = rtmc_stats::Spread::of(&ratios);
            let of_spread = |f: fn(&rtmc_stats::Spread) -> f64| spread.as_ref().map_or(f64::NAN, f);
            Some(AaSpread {
                metric,
                repeats: runs.len(),
                ratio_min: of_spread(|s| s.min),
                ratio_median: of_spread(|s| s.median),
                ratio_max: of_spread(|s| s.max),
                ci_lo_min: runs
                    .iter()
                    .map(|c| c.raw.ci.lo)
                    .fold(f64::INFINITY, f64::min),
                ci_hi_max: runs
                    .iter()
                    .map(|c| c.raw.ci.hi)
                    .fold(f64::NEG_INFINITY, f64::max),
                widest_reach_pct: 100.0 * reach,
                suggested_threshold_pct: suggested,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_fixed_by_its_seed() {
        let a: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SplitMix64::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        // SplitMix64's published first output for seed 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut r = SplitMix64::new(1);
        assert!((0..10_000).all(|_| r.below(3) < 3));
    }

    #[test]
    fn the_interval_is_reproducible_and_contains_the_point() {
        let a = [10.0, 11.0, 9.5, 10.2, 10.8];
        let b = [12.0, 12.5, 11.8, 12.2, 13.0];
        let cfg = BootstrapConfig::default();
        let e1 = ratio_of_medians(&a, &b, &cfg, 42);
        let e2 = ratio_of_medians(&a, &b, &cfg, 42);
        assert_eq!(e1, e2);
        assert!(e1.ci.lo <= e1.ratio && e1.ratio <= e1.ci.hi, "{e1:?}");
        assert!((e1.ratio - 12.2 / 10.2).abs() < 1e-12);
    }

    #[test]
    fn three_rounds_give_the_range_of_ratios() {
        // At 3 rounds per side the 2.5% and 97.5% quantiles of the bootstrap
        // are its extremes: min(B)/max(A) and max(B)/min(A).
        let a = [10.0, 11.0, 12.0];
        let b = [13.0, 14.0, 15.0];
        let e = ratio_of_medians(&a, &b, &BootstrapConfig::default(), 1);
        assert!((e.ci.lo - 13.0 / 12.0).abs() < 1e-9, "{e:?}");
        assert!((e.ci.hi - 15.0 / 10.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn aa_spread_suggests_a_threshold_above_the_widest_reach() {
        let cmp = |lo: f64, hi: f64| MetricComparison {
            metric: Metric::RecvP99,
            baseline_values: vec![],
            candidate_values: vec![],
            baseline_median: 1.0,
            candidate_median: 1.0,
            raw: RatioEstimate {
                ratio: (lo + hi) / 2.0,
                ci: RatioInterval { lo, hi },
            },
            raw_pairs: vec![],
            control: None,
            corrected: None,
            corrected_pairs: None,
        };
        let spread = aa_spread(&[vec![cmp(0.95, 1.04)], vec![cmp(0.97, 1.08)]]);
        assert_eq!(spread.len(), 1);
        let s = &spread[0];
        assert_eq!(s.repeats, 2);
        assert!((s.widest_reach_pct - 8.0).abs() < 1e-9);
        assert_eq!(s.suggested_threshold_pct, 10.0);
        assert_eq!(s.ci_lo_min, 0.95);
        assert_eq!(s.ci_hi_max, 1.08);
    }
}
