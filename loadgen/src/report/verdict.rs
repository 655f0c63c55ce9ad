//! Whether a run passed, and why not, loudly: the failures each phase or
//! bring-up implies under the profile's thresholds (loss, duplicates,
//! reordering, errors, an SLO miss), which steps of a ramp were sustainable,
//! and what the floor and the NATS peers only note (they are yardsticks:
//! Redis pub/sub and NATS core are at-most-once by design).

use crate::engine::phase::PhaseReport;
use crate::measure::selfcheck::Verdict;
use crate::report::text::distinct_samples;
use crate::report::types::{ConnectReport, RunReport};

impl RunReport {
    /// Adds the failures a phase implies under the profile's thresholds.
    pub fn judge_phase(&mut self, p: &PhaseReport, slo_p99_ms: Option<f64>, max_pub_err_pct: f64) {
        for f in phase_violations(p, slo_p99_ms, max_pub_err_pct) {
            self.failures.push(format!("{}: {f}", p.label));
        }
        if p.selfcheck.verdict != Verdict::Ok {
            self.notes.push(format!(
                "{} self-check: {}",
                p.label, p.selfcheck.explanation
            ));
        }
    }

    /// Adds the failures a bring-up implies.
    pub fn judge_connect(&mut self, label: &str, c: &ConnectReport, max_pct: f64) {
        let failed = c.connect_errors + c.login_errors;
        let pct = percent(failed as u64, c.clients as u64);
        if failed > 0 && pct > max_pct {
            self.failures.push(format!(
                "{label}: {failed} of {} clients failed to connect/log in ({pct:.2}% > {max_pct}%): {}",
                c.clients,
                distinct_samples(&c.error_samples)
            ));
        }
    }

    /// Notes what went wrong on a yardstick (the floor, a NATS peer): its
    /// loss is a fact about the yardstick, not a failure of rtmc.
    pub fn note_peer(&mut self, p: &PhaseReport) {
        let v = phase_violations(p, None, 100.0);
        if !v.is_empty() {
            self.notes.push(format!("{}: {}", p.label, v.join("; ")));
        }
        if p.selfcheck.verdict != Verdict::Ok {
            self.notes.push(format!(
                "{} self-check: {}",
                p.label, p.selfcheck.explanation
            ));
        }
    }

    /// A ramp fails when not even its first step was sustainable.
    pub fn judge_ramp(&mut self, max_sustainable_rate_per_sec: Option<f64>) {
        if max_sustainable_rate_per_sec.is_none() {
            self.failures
                .push("ramp: not even the first step met the SLO without loss".into());
        }
    }
}

/// Why a phase is not acceptable: loss, duplicates, reordering, publish
/// errors above the threshold, an SLO miss.
pub fn phase_violations(
    p: &PhaseReport,
    slo_p99_ms: Option<f64>,
    max_pub_err_pct: f64,
) -> Vec<String> {
    let mut out = Vec::new();
    let a = &p.accounting;
    if a.lost > 0 {
        out.push(format!(
            "LOSS: {} expected deliveries never arrived ({} of {} receivers affected, {} gaps)",
            a.lost, a.receivers_with_loss, a.receivers, a.gaps
        ));
    }
    // (count, tag, what was counted): "<tag><count> <what>" when not zero.
    let counted: [(u64, &str, &str); 4] = [
        (
            a.duplicates,
            "DUPLICATES: ",
            "deliveries repeated a sequence number",
        ),
        (a.out_of_order, "ORDER: ", "deliveries arrived out of order"),
        (
            p.acked_not_delivered,
            "ACKED-NOT-DELIVERED: ",
            "acknowledged messages never reached a witness receiver",
        ),
        (
            p.silent_clients as u64,
            "",
            "receivers never answered the final accounting",
        ),
    ];
    for (n, tag, what) in counted {
        if n > 0 {
            out.push(format!("{tag}{n} {what}"));
        }
    }
    if p.slow_consumer_disconnects > 0 {
        out.push(format!(
            "{} receivers were disconnected as slow consumers",
            p.slow_consumer_disconnects
        ));
    } else if p.disconnects > 0 {
        out.push(format!(
            "{} receivers were disconnected by the server",
            p.disconnects
        ));
    }
    out.extend(publish_violations(p, max_pub_err_pct));
    if let Some(slo) = slo_p99_ms {
        if p.latency.p99_ms > slo {
            out.push(format!("SLO: p99 {:.2} ms > {slo} ms", p.latency.p99_ms));
        }
    }
    out
}

/// Publish errors and unanswered publishes above the threshold; nothing published.
fn publish_violations(p: &PhaseReport, max_pub_err_pct: f64) -> Vec<String> {
    let mut out = Vec::new();
    let failed = p.publish_errors + p.unanswered;
    let pct = percent(failed, p.published);
    if failed > 0 && pct > max_pub_err_pct {
        out.push(format!(
            "{} publishes failed, {} unanswered ({pct:.2}% > {max_pub_err_pct}%): {}",
            p.publish_errors,
            p.unanswered,
            distinct_samples(&p.publish_error_samples)
        ));
    }
    if p.published == 0 {
        out.push("nothing was published".into());
    }
    out
}

/// `part` in percent of `whole` (0 when there is no whole).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_steps_violation_names_each_distinct_error_once() {
        let p = PhaseReport {
            published: 100,
            publish_errors: 40,
            publish_error_samples: vec!["overloaded".into(); 10],
            ..Default::default()
        };
        let v = phase_violations(&p, None, 1.0).join("; ");
        assert_eq!(v.matches("overloaded").count(), 1, "{v}");
        assert!(v.contains("overloaded (×10 of 10 samples)"), "{v}");
        assert!(v.contains("40 publishes failed"), "{v}");
    }
}
