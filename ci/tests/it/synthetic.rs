//! Synthetic rounds for the statistics tests: a round's rtmc and floor
//! values are a base × the round's machine factor (shared by both phases:
//! the drift the control sees) × independent noise, with an optional effect
//! on the candidate's rtmc only or on a whole side.

use std::path::PathBuf;

use rtmc_ci::compare::SplitMix64;
use rtmc_ci::metric::Metric;
use rtmc_ci::round::{PercentilesView, PhaseView, Round, Side};

/// How rounds are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Log-normal sigma of each phase's own noise.
    pub noise_sigma: f64,
    /// Log-normal sigma of the per-round machine factor (rtmc and floor alike).
    pub machine_sigma: f64,
    /// Multiplies the candidate's rtmc latencies (and divides its throughput).
    pub effect: f64,
    /// Multiplies the candidate side's machine factor (a slower machine
    /// during B rounds: moves rtmc and floor alike).
    pub candidate_machine: f64,
}

impl Model {
    pub fn noise(noise_sigma: f64) -> Self {
        Self {
            noise_sigma,
            machine_sigma: 0.0,
            effect: 1.0,
            candidate_machine: 1.0,
        }
    }
}

fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.unit().max(f64::MIN_POSITIVE);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn phase(scale_latency: f64, scale_throughput: f64) -> PhaseView {
    let p = |ms: f64| PercentilesView {
        count: 1000,
        p50_ms: ms * scale_latency,
        p99_ms: 4.0 * ms * scale_latency,
        p99_9_ms: 6.0 * ms * scale_latency,
    };
    PhaseView {
        label: String::new(),
        deliveries_per_sec: 50_000.0 * scale_throughput,
        latency: p(5.0),
        ack_latency: p(4.0),
        server_cpu: vec![],
    }
}

/// One round of `side` in `pair`.
pub fn round(model: &Model, rng: &mut SplitMix64, side: Side, pair: usize) -> Round {
    let machine = (model.machine_sigma * gaussian(rng)).exp()
        * if side == Side::Candidate {
            model.candidate_machine
        } else {
            1.0
        };
    let effect = if side == Side::Candidate {
        model.effect
    } else {
        1.0
    };
    let rtmc_noise = (model.noise_sigma * gaussian(rng)).exp();
    let floor_noise = (model.noise_sigma * gaussian(rng)).exp();
    let rtmc_scale = machine * effect * rtmc_noise;
    let floor_scale = machine * floor_noise;
    Round {
        side,
        pair,
        order: 2 * pair + usize::from((side == Side::Candidate) == pair.is_multiple_of(2)),
        dir: PathBuf::new(),
        rtmc: phase(rtmc_scale, 1.0 / rtmc_scale),
        floor: Some(phase(floor_scale, 1.0 / floor_scale)),
        kib_per_idle_client: None,
        failures: vec![],
    }
}

/// `pairs` rounds per side.
pub fn rounds(model: &Model, seed: u64, pairs: usize) -> (Vec<Round>, Vec<Round>) {
    let mut rng = SplitMix64::new(seed);
    let mut a = Vec::new();
    let mut b = Vec::new();
    for pair in 0..pairs {
        a.push(round(model, &mut rng, Side::Baseline, pair));
        b.push(round(model, &mut rng, Side::Candidate, pair));
    }
    (a, b)
}

/// The metric the rate tests look at (all latency metrics move alike here).
pub const METRIC: Metric = Metric::RecvP99;
