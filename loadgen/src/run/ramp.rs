//! The capacity ramp: on one connected fleet, steps of rising publish rate
//! until a step misses the p99 SLO or loses, duplicates or reorders
//! anything; the highest sustainable rate is the answer. With `through`
//! (`--through`) it goes on to the maximum rate, so offered against
//! acknowledged rate, refusals and ack p99 per step show the knee and the
//! plateau beyond it (graceful overload).

use std::time::{Duration, Instant};

use crate::engine::accounting::DeliveryTotals;
use crate::engine::fleet::Fleet;
use crate::engine::phase::{run_phase, PhaseResult, PhaseSpec};
use crate::profile::{Profile, RampProfile};
use crate::report::types::{RampReport, RampStep};
use crate::report::verdict::phase_violations;

/// A finished ramp: its report and every step's histograms.
pub struct RampOutcome {
    pub report: RampReport,
    pub steps: Vec<PhaseResult>,
}

/// Runs the profile's ramp on `fleet`. Every step is `template` at the
/// step's rate and duration, its message ids after the previous step's;
/// the fleet is closed at the end.
pub async fn run_ramp(
    fleet: &mut Fleet,
    profile: &Profile,
    template: PhaseSpec,
    run_start: Instant,
) -> RampOutcome {
    let ramp = &profile.ramp;
    let slo_p99_ms = profile.slo.p99_ms.unwrap_or(ramp.default_p99_ms);
    let mut steps = Vec::new();
    let mut results = Vec::new();
    let mut rate = ramp.start_rate_per_sec;
    let mut seq_base = 0u64;
    let mut head = template.head_before;
    let mut best: Option<(f64, f64)> = None;
    let mut prev_cumulative = DeliveryTotals::default();
    for _ in 0..ramp.max_steps.max(1) {
        if rate > ramp.max_rate_per_sec {
            break;
        }
        if !profile.output.quiet {
            eprintln!(
                "loadgen: ramp step at {rate:.0} msg/s for {} s",
                ramp.step_duration_secs
            );
        }
        let spec = PhaseSpec {
            rate_per_sec: rate,
            duration_secs: ramp.step_duration_secs,
            seq_base,
            head_before: head,
            last: false,
            ..template.clone()
        };
        let r = run_phase(fleet, spec, run_start).await;
        seq_base += (rate * ramp.step_duration_secs).ceil() as u64 + 1;
        head = r.report.head_after;
        let step = judge_step(rate, &r, &mut prev_cumulative, slo_p99_ms, profile);
        if step.sustainable {
            best = Some((rate, step.phase.deliveries_per_sec));
        }
        let sustainable = step.sustainable;
        steps.push(step);
        results.push(r);
        if !sustainable && !ramp.through {
            break;
        }
        rate = next_rate(ramp, rate);
    }
    let _ = fleet.sync(head, Duration::from_secs(2), true).await;
    RampOutcome {
        report: RampReport {
            slo_p99_ms,
            max_sustainable_rate_per_sec: best.map(|b| b.0),
            max_sustainable_deliveries_per_sec: best.map(|b| b.1),
            steps,
        },
        steps: results,
    }
}

/// One step as reported: its own share of the fleet's cumulative
/// accounting, and whether it met the SLO without loss.
fn judge_step(
    rate_per_sec: f64,
    r: &PhaseResult,
    prev_cumulative: &mut DeliveryTotals,
    slo_p99_ms: f64,
    profile: &Profile,
) -> RampStep {
    let mut phase = r.report.clone();
    let cumulative = phase.accounting;
    phase.accounting = cumulative.since(prev_cumulative);
    *prev_cumulative = cumulative;
    let violations = phase_violations(&phase, Some(slo_p99_ms), profile.slo.max_publish_error_pct);
    let sustainable = violations.is_empty();
    RampStep {
        rate_per_sec,
        phase,
        sustainable,
        violation: (!sustainable).then(|| violations.join("; ")),
    }
}

/// The rate after `rate`: times the factor when there is one above 1, else
/// plus the step (at least 1 msg/s).
fn next_rate(ramp: &RampProfile, rate: f64) -> f64 {
    match ramp.factor {
        Some(f) if f > 1.0 => rate * f,
        _ => rate + ramp.step_rate_per_sec.max(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_rise_by_step_or_by_factor() {
        let mut ramp = RampProfile {
            step_rate_per_sec: 100.0,
            ..Default::default()
        };
        assert_eq!(next_rate(&ramp, 200.0), 300.0);
        ramp.factor = Some(1.5);
        assert_eq!(next_rate(&ramp, 200.0), 300.0);
        ramp.factor = Some(1.0);
        ramp.step_rate_per_sec = 0.0;
        assert_eq!(next_rate(&ramp, 200.0), 201.0);
    }
}
