//! The statistics of repeated rounds, written once: the median, the
//! min–max spread, and ratios taken pair by pair. loadgen's interleaved
//! rounds (`loadgen run --rounds N`: rtmc ÷ each peer) and the latency gate
//! (`gate`: candidate ÷ baseline) both summarise with these, so a ratio in
//! the README and a ratio in a gate report mean the same computation.
//!
//! Which ratio: loadgen reports the **median of the per-round ratios**, with
//! their min–max; the gate's headline is the **ratio of the medians** (with
//! a bootstrap interval, in `rtmc-ci`) and it counts the per-pair ratios for
//! its agreement rule. The two answer different questions. Phases of one
//! loadgen round run back to back on the same machine state, so dividing
//! within a round cancels what the machine did to both (a build next door
//! slows rtmc and Redis alike); the median of those ratios then discards the
//! odd round. The ratio of medians instead compares two distributions whose
//! members need not be paired — right for the gate's A and B sides, whose
//! rounds are separate processes minutes apart. [`tests`] shows them differ
//! when one round's slowdown hits both sides.
//!
//! No crate here but `serde`: the statistics depend on neither loadgen nor
//! the gate, and loadgen must not link the gate (ARCHITECTURE.md,
//! dependency direction).

use serde::{Deserialize, Serialize};

/// Median of `values` (mean of the middle two for an even count; NaN when
/// empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    median_in_place(&mut v)
}

/// [`median`] sorting `v` itself (the gate's bootstrap calls it thousands
/// of times per metric and reuses one buffer).
pub fn median_in_place(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `b[i] / a[i]` for each pair (the shorter slice bounds the pairs).
pub fn pair_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| y / x).collect()
}

/// A figure over several rounds: its median and its range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Finite values behind the figure (a round with nothing measured, or a
    /// ratio over a zero, is left out and not counted).
    pub n: usize,
}

impl Spread {
    /// The median and min–max of the finite `values`; `None` when there is
    /// none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        Some(Spread {
            median: median(&finite),
            min: finite.iter().copied().fold(f64::INFINITY, f64::min),
            max: finite.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: finite.len(),
        })
    }

    /// The spread of the per-pair ratios `b[i] / a[i]`: the median ratio and
    /// its min–max (see the crate documentation for why pairs).
    pub fn of_pair_ratios(a: &[f64], b: &[f64]) -> Option<Spread> {
        Spread::of(&pair_ratios(a, b))
    }

    /// (max − min) / median: how far apart the rounds were, as a fraction.
    pub fn relative_range(&self) -> f64 {
        (self.max - self.min) / self.median
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn a_spread_is_the_median_and_the_extremes() {
        let s = Spread::of(&[12.0, 9.0, 30.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (12.0, 9.0, 30.0, 3));
        assert!((s.relative_range() - 21.0 / 12.0).abs() < 1e-12);
        let one = Spread::of(&[4.0]).unwrap();
        assert_eq!((one.median, one.min, one.max), (4.0, 4.0, 4.0));
    }

    #[test]
    fn nothing_finite_is_no_spread_and_non_finite_values_are_left_out() {
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN, f64::INFINITY]), None);
        let s = Spread::of(&[2.0, f64::NAN, 4.0]).unwrap();
        assert_eq!((s.median, s.n), (3.0, 2));
    }

    #[test]
    fn ratios_are_taken_pair_by_pair() {
        assert_eq!(pair_ratios(&[2.0, 4.0, 5.0], &[4.0, 4.0]), [2.0, 1.0]);
        // A zero denominator gives a non-finite ratio, which the spread drops.
        let s = Spread::of_pair_ratios(&[0.0, 2.0, 4.0], &[1.0, 3.0, 4.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (1.25, 1.0, 1.5, 2));
    }

    #[test]
    fn the_median_of_ratios_follows_the_pairs_and_the_ratio_of_medians_does_not() {
        // Three rounds of rtmc and a peer; in round 2 the machine was busy
        // and both sides slowed down together. Within every round rtmc took
        // 2× the peer, which is what the median of per-round ratios reports.
        let peer = [5.0, 30.0, 6.0];
        let rtmc = [10.0, 60.0, 12.0];
        let paired = Spread::of_pair_ratios(&peer, &rtmc).unwrap();
        assert_eq!((paired.median, paired.min, paired.max), (2.0, 2.0, 2.0));
        // Where they differ: rounds whose conditions were not shared. The
        // paired ratios say rtmc took 1.5× to 3× the peer, 2× in the middle
        // round; the ratio of medians (12 / 5 = 2.4) pairs rtmc's third round
        // with the peer's first and is no round's ratio at all.
        let peer = [5.0, 20.0, 4.0];
        let rtmc = [10.0, 30.0, 12.0];
        let paired = Spread::of_pair_ratios(&peer, &rtmc).unwrap();
        assert_eq!((paired.median, paired.min, paired.max), (2.0, 1.5, 3.0));
        assert_eq!(median(&rtmc) / median(&peer), 12.0 / 5.0);
    }
}
