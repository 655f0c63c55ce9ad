//! Interleaved rounds (`loadgen run --rounds N`): the phase kinds — rtmc and
//! each peer it is compared with (the Redis pub/sub floor, NATS core,
//! NATS JetStream) — take turns, N rounds each. A single run on a shared
//! machine is not a figure (design.md §7); the median of the rounds with
//! its min–max is.
//!
//! The order ([`round_order`]) goes by pairs of rounds: pair m runs the
//! kinds as listed rotated left by 2m, forward in its first round and
//! reversed in its second. With two kinds the rotation is always the
//! identity, so the order is the gate's A B B A (A B, B A, A B, …). With
//! more kinds, every kind's position over the rounds is spread evenly: the
//! reversal maps position p to k−1−p, and the rotation by 2m walks the
//! kinds through the other positions (k rounds put every kind at every
//! position once when k is even, 2k rounds twice when k is odd), and each
//! kind's neighbours change from round to round. A fixed order would run a
//! kind always after the same neighbour and at the same point of the round,
//! so any effect of position (the previous phase's backlog still draining,
//! a linear drift of the machine over the run) would bias every round the
//! same way; rotating turns it into spread that the median discards.
//!
//! Fleets are connected once and kept when the open-file limit holds every
//! kind's fleet at once; otherwise each kind's fleet is connected at the
//! start of its phase and closed after it ([`plan_fleets`]).
//!
//! The ratio rtmc ÷ peer is the median of the per-round ratios with their
//! min–max (`rtmc_stats`' documentation says why pairs): the phases of one
//! round ran minutes apart at most, on the same machine state.

use serde::{Deserialize, Serialize};

use crate::engine::accounting::DeliveryTotals;
use crate::engine::fleet::Fleet;
use crate::engine::phase::{HeadProbe, PhaseReport, PhaseSpec};

/// What a round's phase measures. A peer is a yardstick: its loss is a
/// note, not a failure (Redis pub/sub is at-most-once by design).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    /// rtmc itself.
    Rtmc,
    /// The Redis pub/sub floor.
    RedisFloor,
    /// NATS core pub/sub.
    NatsCore,
    /// NATS JetStream (file storage).
    JetStream,
}

impl PhaseKind {
    /// The phase label (`rtmc`, `floor`, `nats`, `jetstream`), also the
    /// interval log tag.
    pub fn label(self) -> &'static str {
        match self {
            PhaseKind::Rtmc => "rtmc",
            PhaseKind::RedisFloor => "floor",
            PhaseKind::NatsCore => "nats",
            PhaseKind::JetStream => "jetstream",
        }
    }

    pub fn is_peer(self) -> bool {
        self != PhaseKind::Rtmc
    }
}

/// How the rounds hold their fleets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetPlan {
    /// Every kind's fleet connected once and kept.
    KeepAll,
    /// Each kind's fleet connected at the start of its phase and closed
    /// after it: the limit cannot hold every fleet at once.
    PerPhase,
}

/// Sockets one fleet needs: its clients, its publishers, a margin.
pub fn fleet_sockets(clients: usize, publishers: usize) -> usize {
    clients + publishers + 2
}

/// Open files kept for everything else (the process, its logs, probes).
pub const FD_MARGIN: usize = 256;

/// Decides how `kinds` fleets of `per_kind` sockets fit the open-file
/// limit (`None` when unknown: assume they fit): all kept when they fit,
/// else one fleet at a time, else `Err(needed)` — not even one fleet fits.
/// (The soft limit is not raised: that needs `setrlimit`, unsafe code the
/// workspace denies; raise it in the shell, `ulimit -n`, up to the hard
/// limit.)
pub fn plan_fleets(
    limit: Option<usize>,
    per_kind: usize,
    kinds: usize,
) -> Result<FleetPlan, usize> {
    let Some(limit) = limit else {
        return Ok(FleetPlan::KeepAll);
    };
    let one = per_kind + FD_MARGIN;
    if kinds * per_kind + FD_MARGIN <= limit {
        Ok(FleetPlan::KeepAll)
    } else if one <= limit {
        Ok(FleetPlan::PerPhase)
    } else {
        Err(one)
    }
}

/// A phase kind with its fleet (while connected) and the spec of its next
/// phase.
pub struct Contender {
    pub kind: PhaseKind,
    /// `None` between phases when fleets are connected per phase.
    pub fleet: Option<Fleet>,
    /// The next round's phase: message ids and the head move on each round.
    next: PhaseSpec,
    /// The fleet's accounting is cumulative; a round reports its own part.
    cumulative: DeliveryTotals,
}

impl Contender {
    pub fn new(kind: PhaseKind, fleet: Fleet, first: PhaseSpec) -> Self {
        Self {
            kind,
            fleet: Some(fleet),
            next: first,
            cumulative: DeliveryTotals::default(),
        }
    }

    /// Takes a freshly connected fleet with its first spec: its accounting
    /// starts over, and so does the head of a peer (its new subscribers
    /// count from the fresh spec's head); rtmc's publisher sequence goes on
    /// so message ids stay unique in the server's dedupe window.
    pub fn reconnected(&mut self, fleet: Fleet, fresh: PhaseSpec) {
        let seq_base = self.next.seq_base;
        self.next = fresh;
        if matches!(self.next.head, HeadProbe::Rtmc { .. }) {
            self.next.seq_base = seq_base;
        }
        self.cumulative = DeliveryTotals::default();
        self.fleet = Some(fleet);
    }

    /// The spec of this round's phase; `last` closes the fleet after it.
    pub fn spec(&self, last: bool) -> PhaseSpec {
        PhaseSpec {
            last,
            ..self.next.clone()
        }
    }

    /// Takes a finished phase: moves the next phase past its messages and
    /// head, and returns its report with its own share of the accounting.
    pub fn finished(&mut self, mut phase: PhaseReport) -> PhaseReport {
        let cumulative = phase.accounting;
        phase.accounting = cumulative.since(&self.cumulative);
        self.cumulative = cumulative;
        let next = &mut self.next;
        next.head_before = phase.head_after;
        next.seq_base = match next.head {
            // The peers' payloads carry seq = seq_base + i + 1: the head.
            HeadProbe::Published => phase.head_after,
            // rtmc's server numbers messages; the publisher sequence only
            // keeps message ids unique (as the ramp's steps do).
            HeadProbe::Rtmc { .. } => {
                next.seq_base + (next.rate_per_sec * next.duration_secs).ceil() as u64 + 1
            }
        };
        phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rounds::*;

    #[test]
    fn two_kinds_alternate_a_b_b_a() {
        for r in 0..6 {
            let want: &[usize] = if r % 2 == 0 { &[0, 1] } else { &[1, 0] };
            assert_eq!(round_order(2, r), want, "round {r}");
        }
        assert_eq!(round_order(1, 1), [0]);
        assert!(round_order(0, 3).is_empty());
    }

    #[test]
    fn more_kinds_rotate_so_every_kind_takes_every_position() {
        assert_eq!(round_order(4, 0), [0, 1, 2, 3]);
        assert_eq!(round_order(4, 1), [3, 2, 1, 0]);
        assert_eq!(round_order(4, 2), [2, 3, 0, 1]);
        assert_eq!(round_order(4, 3), [1, 0, 3, 2]);
        assert_eq!(round_order(4, 4), [0, 1, 2, 3]);
        assert_eq!(round_order(3, 2), [2, 0, 1]);
        // k even: k rounds put each kind at each position once; k odd: 2k
        // rounds twice.
        for (k, rounds, times) in [(4, 4, 1), (3, 6, 2), (2, 2, 1)] {
            let mut seen = vec![vec![0; k]; k];
            for r in 0..rounds {
                let order = round_order(k, r);
                let mut sorted = order.clone();
                sorted.sort();
                assert_eq!(sorted, (0..k).collect::<Vec<_>>(), "round {r}");
                for (pos, kind) in order.into_iter().enumerate() {
                    seen[kind][pos] += 1;
                }
            }
            assert!(
                seen.iter().flatten().all(|&n| n == times),
                "k {k}: {seen:?}"
            );
        }
    }

    #[test]
    fn fleets_are_kept_when_the_limit_holds_them_else_connected_per_phase() {
        let per = fleet_sockets(10_000, 1);
        // This machine's 20000: four (or even two) 10k fleets cannot be kept.
        assert_eq!(plan_fleets(Some(20_000), per, 4), Ok(FleetPlan::PerPhase));
        assert_eq!(plan_fleets(Some(20_000), per, 2), Ok(FleetPlan::PerPhase));
        assert_eq!(plan_fleets(Some(20_000), per, 1), Ok(FleetPlan::KeepAll));
        // Four 1k fleets fit, and so do four 4k ones exactly at the margin.
        let small = fleet_sockets(1000, 1);
        assert_eq!(plan_fleets(Some(20_000), small, 4), Ok(FleetPlan::KeepAll));
        let four_k = fleet_sockets(4000, 1);
        assert_eq!(
            plan_fleets(Some(4 * four_k + FD_MARGIN), four_k, 4),
            Ok(FleetPlan::KeepAll)
        );
        assert_eq!(
            plan_fleets(Some(4 * four_k + FD_MARGIN - 1), four_k, 4),
            Ok(FleetPlan::PerPhase)
        );
        assert_eq!(plan_fleets(None, per, 4), Ok(FleetPlan::KeepAll));
        // Not even one fleet fits: the error says how many it needs.
        assert_eq!(plan_fleets(Some(4096), per, 2), Err(per + FD_MARGIN));
    }

    fn phase(label: &str, p99_ms: f64, deliveries_per_sec: f64, cpu: Option<f64>) -> PhaseReport {
        let mut p = PhaseReport {
            label: label.into(),
            deliveries_per_sec,
            ..Default::default()
        };
        p.latency.p50_ms = p99_ms / 4.0;
        p.latency.p99_ms = p99_ms;
        p.latency.p99_9_ms = p99_ms * 1.5;
        p.ack_latency.p99_ms = p99_ms * 2.0;
        p.server_cpu = vec![crate::measure::cpu::ServerCpu {
            what: "x".into(),
            pids: vec![],
            cpu_secs: cpu,
            cpu_secs_per_million_deliveries: cpu,
            not_measured: None,
        }];
        p
    }

    fn three_rounds() -> Vec<RoundPhases> {
        // Round 2 ran the floor first (the alternating order); round 3 was
        // a busy moment for both.
        vec![
            RoundPhases {
                round: 1,
                phases: vec![
                    phase("rtmc", 10.0, 20_000.0, Some(4.0)),
                    phase("floor", 5.0, 20_000.0, Some(2.0)),
                ],
            },
            RoundPhases {
                round: 2,
                phases: vec![
                    phase("floor", 4.0, 19_000.0, Some(2.0)),
                    phase("rtmc", 12.0, 19_500.0, None),
                ],
            },
            RoundPhases {
                round: 3,
                phases: vec![
                    phase("rtmc", 40.0, 18_000.0, Some(5.0)),
                    phase("floor", 20.0, 20_000.0, Some(2.5)),
                ],
            },
        ]
    }

    fn metric<'a>(m: &'a [MetricSpread], key: &str) -> &'a MetricSpread {
        m.iter().find(|x| x.metric == key).unwrap()
    }

    #[test]
    fn sides_get_medians_and_ranges_and_ratios_are_medians_of_per_round_ratios() {
        let rounds = three_rounds();
        let s = RoundsSummary::of(&rounds, &["rtmc", "floor"]);
        assert_eq!(s.rounds, 3);
        assert_eq!(s.sides.len(), 2);
        let rtmc_p99 = metric(&s.sides[0].metrics, "recv_p99");
        assert_eq!(rtmc_p99.values, [10.0, 12.0, 40.0]);
        let sp = rtmc_p99.spread.unwrap();
        assert_eq!((sp.median, sp.min, sp.max), (12.0, 10.0, 40.0));
        let floor_p99 = metric(&s.sides[1].metrics, "recv_p99");
        assert_eq!(floor_p99.values, [5.0, 4.0, 20.0]);
        // Per round: 2, 3, 2 → median 2, range 2–3 (the ratio of medians
        // would be 12 / 5 = 2.4, no round's ratio).
        assert_eq!(s.ratios.len(), 1);
        assert_eq!(s.ratios[0].peer, "floor");
        let r = metric(&s.ratios[0].metrics, "recv_p99");
        assert_eq!(r.values, [2.0, 3.0, 2.0]);
        let rs = r.spread.unwrap();
        assert_eq!((rs.median, rs.min, rs.max), (2.0, 2.0, 3.0));
        // A round without a CPU figure is left out of that metric, not zero.
        let cpu = metric(
            &s.sides[0].metrics,
            "server_cpu_secs_per_million_deliveries",
        );
        assert_eq!(cpu.spread.unwrap().n, 2);
        let cpu_ratio = metric(
            &s.ratios[0].metrics,
            "server_cpu_secs_per_million_deliveries",
        );
        assert_eq!(cpu_ratio.spread.unwrap().median, 2.0);
        assert!(
            s.order.contains("rtmc floor | floor rtmc | rtmc floor"),
            "{}",
            s.order
        );
    }

    #[test]
    fn the_text_shows_every_round_and_the_summary() {
        let rounds = three_rounds();
        let s = RoundsSummary::of(&rounds, &["rtmc", "floor"]);
        let mut out = String::new();
        text(&mut out, &rounds, &s);
        assert!(out.contains("3 interleaved rounds"), "{out}");
        let per_round = |label: &str| {
            out.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .filter(|w| w.len() > 1 && w[0].parse::<usize>().is_ok() && w[1] == label)
                .count()
        };
        assert_eq!((per_round("rtmc"), per_round("floor")), (3, 3), "{out}");
        assert!(out.contains("not measured"), "{out}");
        assert!(out.contains("2.00 [2.00–3.00]"), "{out}");
        assert!(out.contains("rtmc÷floor"), "{out}");
    }

    #[test]
    fn a_summary_with_an_unmeasured_round_reads_back() {
        let s = RoundsSummary::of(&three_rounds(), &["rtmc", "floor"]);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("null"), "round 2's CPU is not measured");
        let back: RoundsSummary = serde_json::from_str(&json).unwrap();
        let cpu = metric(
            &back.sides[0].metrics,
            "server_cpu_secs_per_million_deliveries",
        );
        assert!(cpu.values[1].is_nan());
        assert_eq!(cpu.values[0], 4.0);
    }

    #[test]
    fn a_run_without_peers_has_no_ratios() {
        let rounds = three_rounds();
        let s = RoundsSummary::of(&rounds, &["rtmc"]);
        assert!(s.ratios.is_empty());
        assert_eq!(s.sides.len(), 1);
    }
}
