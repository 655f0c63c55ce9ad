//! The decision rule on synthetic rounds whose truth is known: a +10% shift
//! is flagged, identical sides are not (false-alarm rate within the nominal
//! level), a shift of the whole machine is not blamed on the code, and
//! throughput is judged the other way round.

use rtmc_ci::compare::{compare_metric, BootstrapConfig, MetricComparison};
use rtmc_ci::metric::Metric;
use rtmc_ci::verdict::{judge, MetricVerdict, Rule};

use crate::synthetic::{rounds, Model, METRIC};

const CFG: BootstrapConfig = BootstrapConfig {
    resamples: 2000,
    confidence: 0.95,
    seed: 0x5EED_6A7E,
};

fn rule(threshold_frac: f64) -> Rule {
    Rule {
        threshold_frac,
        agreement_frac: 0.8,
        placeholder: false,
    }
}

fn comparison(model: &Model, seed: u64, pairs: usize, metric: Metric) -> MetricComparison {
    let (a, b) = rounds(model, seed, pairs);
    let cfg = BootstrapConfig { seed, ..CFG };
    compare_metric(&a, &b, metric, &cfg)
}

/// Share of `seeds` datasets on which `verdict` came out.
fn rate(
    model: &Model,
    pairs: usize,
    metric: Metric,
    rule: Rule,
    seeds: std::ops::Range<u64>,
    verdict: MetricVerdict,
) -> f64 {
    let n = seeds.end - seeds.start;
    let hits = seeds
        .filter(|s| judge(&comparison(model, *s, pairs, metric), rule).verdict == verdict)
        .count();
    hits as f64 / n as f64
}

#[test]
fn a_ten_percent_shift_is_flagged() {
    let model = Model {
        effect: 1.10,
        ..Model::noise(0.02)
    };
    // 5 pairs, 2% noise per phase, a 3% threshold: caught essentially always.
    let caught = rate(
        &model,
        5,
        METRIC,
        rule(0.03),
        0..200,
        MetricVerdict::Regression,
    );
    assert!(caught >= 0.95, "caught {caught}");
    // At the default 3 pairs too.
    let caught = rate(
        &model,
        3,
        METRIC,
        rule(0.03),
        1000..1200,
        MetricVerdict::Regression,
    );
    assert!(caught >= 0.90, "caught {caught}");
}

#[test]
fn identical_sides_stay_within_the_nominal_false_alarm_rate() {
    let model = Model::noise(0.05);
    let seeds = 400u64;
    // The bare interval (no threshold, no agreement): with ≥ 5 pairs the
    // 95% interval excludes 1 at most ~5% of the time (+ sampling error).
    let excluded = (0..seeds)
        .filter(|s| comparison(&model, *s, 6, METRIC).raw.ci.excludes_one())
        .count() as f64
        / seeds as f64;
    let tolerance = 2.5 * (0.05f64 * 0.95 / seeds as f64).sqrt();
    assert!(
        excluded <= 0.05 + tolerance,
        "interval excluded 1 in {excluded}"
    );
    // The full rule with no minimum effect is one-sided: ≤ 2.5% + error.
    let fa = rate(
        &model,
        6,
        METRIC,
        rule(0.0),
        0..seeds,
        MetricVerdict::Regression,
    );
    assert!(fa <= 0.025 + tolerance, "false alarms {fa}");
    // With a threshold of twice the per-round noise, none at the default
    // 3 pairs (where the bare interval alone is only ~90%: see ci/README.md).
    let fa = rate(
        &model,
        3,
        METRIC,
        rule(0.10),
        0..seeds,
        MetricVerdict::Regression,
    );
    assert_eq!(fa, 0.0);
}

#[test]
fn a_shift_of_the_whole_machine_is_not_a_regression() {
    // Every B round ran on a 30% slower machine: rtmc and floor alike.
    let model = Model {
        candidate_machine: 1.3,
        ..Model::noise(0.02)
    };
    for seed in 0..100 {
        for metric in [Metric::RecvP99, Metric::AckP50, Metric::DeliveriesPerSec] {
            let c = comparison(&model, seed, 5, metric);
            let j = judge(&c, rule(0.05));
            assert_ne!(j.verdict, MetricVerdict::Regression, "{}", j.reason);
            assert!(c.corrected.unwrap().ci.lo < 1.05, "{c:?}");
        }
    }
    // The raw ratio alone would have failed; the gate names the machine.
    let j = judge(&comparison(&model, 7, 5, METRIC), rule(0.05));
    assert_eq!(j.verdict, MetricVerdict::MachineDrift, "{}", j.reason);
    assert!(j.control_moved);
}

#[test]
fn a_real_regression_on_a_drifting_machine_still_fails() {
    let model = Model {
        effect: 1.3,
        candidate_machine: 1.2,
        ..Model::noise(0.02)
    };
    let caught = rate(
        &model,
        5,
        METRIC,
        rule(0.05),
        0..100,
        MetricVerdict::Regression,
    );
    assert!(caught >= 0.95, "caught {caught}");
}

#[test]
fn throughput_is_judged_the_other_way_round() {
    // The synthetic candidate is 20% slower: latencies ×1.2, deliveries/s ÷1.2.
    let slower = Model {
        effect: 1.2,
        ..Model::noise(0.02)
    };
    let j = judge(
        &comparison(&slower, 3, 5, Metric::DeliveriesPerSec),
        rule(0.05),
    );
    assert_eq!(j.verdict, MetricVerdict::Regression, "{}", j.reason);
    let faster = Model {
        effect: 0.8,
        ..Model::noise(0.02)
    };
    for metric in [Metric::DeliveriesPerSec, Metric::RecvP50] {
        let j = judge(&comparison(&faster, 3, 5, metric), rule(0.05));
        assert_eq!(
            j.verdict,
            MetricVerdict::Improvement,
            "{metric}: {}",
            j.reason
        );
    }
}

/// Prints the rates quoted in ci/README.md (slow: run on demand with
/// `cargo test -p rtmc-ci --test it calibration -- --ignored --nocapture`).
#[test]
#[ignore]
fn calibration_table() {
    let seeds = 1000u64;
    println!("pairs | bare 95% CI excludes 1 (A/A) | rule FA t=0/5/10% | +10% caught t=0/3/5%  (5% noise per phase)");
    for pairs in [3, 4, 5, 6, 8, 10] {
        let h0 = Model::noise(0.05);
        let h1 = Model { effect: 1.10, ..h0 };
        let excluded = (0..seeds)
            .filter(|s| comparison(&h0, *s, pairs, METRIC).raw.ci.excludes_one())
            .count();
        let fa: Vec<f64> = [0.0, 0.05, 0.10]
            .iter()
            .map(|t| {
                rate(
                    &h0,
                    pairs,
                    METRIC,
                    rule(*t),
                    0..seeds,
                    MetricVerdict::Regression,
                )
            })
            .collect();
        let caught: Vec<f64> = [0.0, 0.03, 0.05]
            .iter()
            .map(|t| {
                rate(
                    &h1,
                    pairs,
                    METRIC,
                    rule(*t),
                    seeds..2 * seeds,
                    MetricVerdict::Regression,
                )
            })
            .collect();
        println!(
            "{pairs} | {:.3} | {:.3?} | {:.3?}",
            excluded as f64 / seeds as f64,
            fa,
            caught
        );
    }
}
