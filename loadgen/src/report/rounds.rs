//! The interleaved rounds' summary (`report.json`'s `rounds` and
//! `rounds_summary`): each kind's median and min–max over the rounds, rtmc ÷
//! each peer as the median of the per-round ratios, and its text. The rounds
//! themselves are run by [`crate::run::rounds`].

use serde::{Deserialize, Serialize};

use crate::engine::phase::PhaseReport;
use rtmc_stats::Spread;

/// The positions of `kinds` phase kinds in the run order of `round`
/// (0-based): pair of rounds m = round / 2 runs the list rotated left by
/// 2m, forward in its first round and reversed in its second (`crate::run::rounds` says why).
pub fn round_order(kinds: usize, round: usize) -> Vec<usize> {
    if kinds == 0 {
        return Vec::new();
    }
    let shift = (2 * (round / 2)) % kinds;
    let mut order: Vec<usize> = (0..kinds).map(|i| (i + shift) % kinds).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// One round: each kind's phase, in the order they ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundPhases {
    /// 1-based.
    pub round: usize,
    pub phases: Vec<PhaseReport>,
}

/// One figure of a side over the rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpread {
    /// `recv_p50`, `recv_p99`, `recv_p99_9`, `deliveries_per_sec`,
    /// `ack_p99`, `server_cpu_secs_per_million_deliveries`.
    pub metric: String,
    /// Per round, in round order; NaN (JSON `null`) where the round did not
    /// measure it (e.g. no server CPU figure).
    #[serde(deserialize_with = "nan_for_null")]
    pub values: Vec<f64>,
    /// Median and min–max; `None` when no round measured it.
    pub spread: Option<Spread>,
}

/// Reads a list of numbers in which `null` stands for NaN (serde_json
/// writes NaN as `null`; without this a report with a round that did not
/// measure a metric could be written but not read back, e.g. by `merge`).
fn nan_for_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let values: Vec<Option<f64>> = Deserialize::deserialize(d)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

impl MetricSpread {
    fn of(metric: &str, values: Vec<f64>) -> Self {
        Self {
            metric: metric.into(),
            spread: Spread::of(&values),
            values,
        }
    }
}

/// A phase kind's figures over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideSummary {
    pub label: String,
    pub metrics: Vec<MetricSpread>,
}

/// rtmc ÷ one peer, round by round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRatios {
    pub peer: String,
    /// Each metric's per-round ratios rtmc ÷ peer, their median and min–max.
    pub metrics: Vec<MetricSpread>,
}

/// The rounds summarised (`report.json`'s `rounds_summary`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundsSummary {
    pub rounds: usize,
    /// How the phases were ordered, in words.
    pub order: String,
    pub sides: Vec<SideSummary>,
    pub ratios: Vec<PeerRatios>,
}

/// A summarised metric: its key, its name in the text, how to read it.
type RoundMetric = (&'static str, &'static str, fn(&PhaseReport) -> f64);

/// The metrics summarised.
const METRICS: [RoundMetric; 6] = [
    ("recv_p50", "p50 ms", |p| p.latency.p50_ms),
    ("recv_p99", "p99 ms", |p| p.latency.p99_ms),
    ("recv_p99_9", "p99.9 ms", |p| p.latency.p99_9_ms),
    ("deliveries_per_sec", "deliveries/s", |p| {
        p.deliveries_per_sec
    }),
    ("ack_p99", "ack p99 ms", |p| p.ack_latency.p99_ms),
    (
        "server_cpu_secs_per_million_deliveries",
        "server CPU-s/M deliv",
        headline_cpu,
    ),
];

/// The phase's headline server CPU-seconds per million deliveries (its
/// first watch), NaN when not measured.
fn headline_cpu(p: &PhaseReport) -> f64 {
    p.server_cpu
        .first()
        .and_then(|c| c.cpu_secs_per_million_deliveries)
        .unwrap_or(f64::NAN)
}

/// The phases labelled `label`, in round order.
fn phases_of<'a>(rounds: &'a [RoundPhases], label: &str) -> Vec<&'a PhaseReport> {
    rounds
        .iter()
        .filter_map(|r| r.phases.iter().find(|p| p.label == label))
        .collect()
}

impl RoundsSummary {
    /// Summarises `rounds` of the kinds labelled `labels` (rtmc first, then
    /// the peers).
    pub fn of(rounds: &[RoundPhases], labels: &[&str]) -> Self {
        let values = |label: &str, read: fn(&PhaseReport) -> f64| -> Vec<f64> {
            phases_of(rounds, label).into_iter().map(read).collect()
        };
        let sides = labels
            .iter()
            .map(|label| SideSummary {
                label: (*label).into(),
                metrics: METRICS
                    .iter()
                    .map(|(metric, _, read)| MetricSpread::of(metric, values(label, *read)))
                    .collect(),
            })
            .collect();
        let ratios = match labels.split_first() {
            Some((rtmc, peers)) => peers
                .iter()
                .map(|peer| PeerRatios {
                    peer: (*peer).into(),
                    metrics: METRICS
                        .iter()
                        .map(|(metric, _, read)| {
                            let (ours, theirs) = (values(rtmc, *read), values(peer, *read));
                            MetricSpread::of(metric, rtmc_stats::pair_ratios(&theirs, &ours))
                        })
                        .collect(),
                })
                .collect(),
            None => Vec::new(),
        };
        Self {
            rounds: rounds.len(),
            order: order_text(labels, rounds.len()),
            sides,
            ratios,
        }
    }
}

/// The order of the first rounds in words: `rotating: rtmc floor | floor
/// rtmc | …`.
fn order_text(labels: &[&str], rounds: usize) -> String {
    let shown = rounds.clamp(2, 4);
    let orders: Vec<String> = (0..shown)
        .map(|r| {
            round_order(labels.len(), r)
                .into_iter()
                .map(|k| labels[k])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    format!(
        "rotating (pair m of rounds: listed order rotated by 2m, then reversed): {} | …",
        orders.join(" | ")
    )
}

/// `12.3 [11.0–14.1]`, or `—` when nothing was measured.
pub fn spread_text(s: &Option<Spread>, decimals: usize) -> String {
    match s {
        Some(s) => format!(
            "{:.d$} [{:.d$}–{:.d$}]",
            s.median,
            s.min,
            s.max,
            d = decimals
        ),
        None => "—".into(),
    }
}

/// Decimals that suit a metric's magnitude.
fn decimals_of(metric: &str) -> usize {
    if metric == "deliveries_per_sec" {
        0
    } else {
        2
    }
}

/// The rounds' text: one line per phase, then the medians with their
/// min–max and the ratios.
pub fn text(out: &mut String, rounds: &[RoundPhases], s: &RoundsSummary) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== {} interleaved rounds (order {}) ==",
        s.rounds, s.order
    );
    let _ = writeln!(
        out,
        "{:>5} {:<9} {:>12} {:>9} {:>9} {:>9} {:>10} {:>8} {:>20}",
        "round",
        "phase",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "ack p99",
        "lost",
        "server CPU-s/M deliv"
    );
    for r in rounds {
        for p in &r.phases {
            let cpu = headline_cpu(p);
            let _ = writeln!(
                out,
                "{:>5} {:<9} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>8} {:>20}",
                r.round,
                p.label,
                p.deliveries_per_sec,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.p99_9_ms,
                p.ack_latency.p99_ms,
                p.accounting.lost,
                if cpu.is_finite() {
                    format!("{cpu:.2}")
                } else {
                    "not measured".into()
                }
            );
        }
    }
    summary_table(out, s);
}

/// The summary table: per metric, each side's median [min–max] and rtmc ÷
/// each peer.
fn summary_table(out: &mut String, s: &RoundsSummary) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "== median over {} rounds [min–max]; ratios are the median of the per-round ratios ==",
        s.rounds
    );
    let mut header = format!("{:<22}", "");
    for side in &s.sides {
        let _ = write!(header, " {:>26}", side.label);
    }
    for peer in &s.ratios {
        let _ = write!(header, " {:>22}", format!("rtmc÷{}", peer.peer));
    }
    let _ = writeln!(out, "{header}");
    for (i, (metric, name, _)) in METRICS.iter().enumerate() {
        let d = decimals_of(metric);
        let mut line = format!("{name:<22}");
        for side in &s.sides {
            let _ = write!(line, " {:>26}", spread_text(&side.metrics[i].spread, d));
        }
        for peer in &s.ratios {
            let _ = write!(line, " {:>22}", spread_text(&peer.metrics[i].spread, 2));
        }
        let _ = writeln!(out, "{line}");
    }
}
