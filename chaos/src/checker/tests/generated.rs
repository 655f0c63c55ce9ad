//! Generated fan-out runs. A small model of the system sequences messages
//! and delivers them to clients that join, drop, come back resuming (from
//! what they saw, or rewound a little) or fresh, and maybe leave for good;
//! the run may end with the clients torn down after it drained.
//! The clean history must be valid; with one acknowledged delivery dropped
//! from a client that was owed it, exactly that message must be lost (and
//! its seq a gap) at exactly that client.

use proptest::prelude::*;
use proptest::sample::Index;

use super::super::AnomalyKind;
use crate::history::{History, Recording};

/// How a message's publish ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acked,
    Failed,
    Unknown,
    /// Invoked, never answered.
    Silent,
}

#[derive(Debug, Clone)]
struct MessagePlan {
    fate: Fate,
    /// Whether it got a seq (always, when acknowledged).
    sequenced: bool,
}

#[derive(Debug, Clone)]
struct ClientPlan {
    join_at_us: u64,
    /// Per break: connected this long, away this long, then back resuming
    /// (or fresh), the resume rewound by this many seqs.
    breaks: Vec<(u64, u64, bool, u64)>,
    /// Leaves for good this long after its last (re)connect.
    leaves_after_us: Option<u64>,
}

#[derive(Debug, Clone)]
struct Run {
    messages: Vec<MessagePlan>,
    clients: Vec<ClientPlan>,
    stored: bool,
    /// Marks the run drained, then disconnects every client still there.
    torn_down: bool,
}

/// After everything in a generated run.
const DRAINED_AT_US: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Connected {
        at: u64,
        head: u64,
        resume_from: Option<u64>,
    },
    Delivered {
        at: u64,
        seq: u64,
    },
    Resumed {
        at: u64,
        from: u64,
        head: u64,
    },
    Disconnected {
        at: u64,
    },
}

fn message_plan() -> impl Strategy<Value = MessagePlan> {
    (0..10u8, any::<bool>()).prop_map(|(f, sequenced)| {
        let fate = match f {
            0..=5 => Fate::Acked,
            6 | 7 => Fate::Failed,
            8 => Fate::Unknown,
            _ => Fate::Silent,
        };
        let sequenced = sequenced || fate == Fate::Acked;
        MessagePlan { fate, sequenced }
    })
}

fn client_plan() -> impl Strategy<Value = ClientPlan> {
    let one_break = (0..1500u64, 0..1500u64, any::<bool>(), 0..3u64);
    (
        0..3000u64,
        prop::collection::vec(one_break, 0..4),
        prop::option::of(0..1500u64),
    )
        .prop_map(|(join_at_us, breaks, leaves_after_us)| ClientPlan {
            join_at_us,
            breaks,
            leaves_after_us,
        })
}

fn run() -> impl Strategy<Value = Run> {
    (
        prop::collection::vec(message_plan(), 1..30),
        prop::collection::vec(client_plan(), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(messages, clients, stored, torn_down)| Run {
            messages,
            clients,
            stored,
            torn_down,
        })
}

fn id(i: usize) -> String {
    format!("m{i}")
}

fn invoked_at(i: usize) -> u64 {
    100 * (i as u64 + 1)
}

impl Run {
    /// The clients: an extra one connected from 0 to the end, then the plans.
    fn client_plans(&self) -> Vec<ClientPlan> {
        let steady = ClientPlan {
            join_at_us: 0,
            breaks: Vec::new(),
            leaves_after_us: None,
        };
        std::iter::once(steady)
            .chain(self.clients.iter().cloned())
            .collect()
    }

    /// Per seq (from 1): its message's index and when it was sequenced.
    fn sequence(&self) -> Vec<(usize, u64)> {
        let sequenced = self
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.sequenced);
        sequenced.map(|(i, _)| (i, invoked_at(i) + 60)).collect()
    }

    fn acked_at_seq(&self, seq: u64) -> bool {
        let (i, _) = self.sequence()[seq as usize - 1];
        self.messages[i].fate == Fate::Acked
    }
}

/// What the model system does for one client.
fn simulate(plan: &ClientPlan, sequence: &[(usize, u64)]) -> Vec<Action> {
    let mut connections = Vec::new();
    let (mut start, mut resume, mut rewind) = (plan.join_at_us, false, 0);
    for &(connected_for, away_for, resumes, rewound) in &plan.breaks {
        let end = start + connected_for + 1;
        connections.push((start, Some(end), resume, rewind));
        (start, resume, rewind) = (end + away_for + 1, resumes, rewound);
    }
    let leave = plan.leaves_after_us.map(|after| start + after + 1);
    connections.push((start, leave, resume, rewind));

    let mut actions = Vec::new();
    let mut last_seen: u64 = 0;
    for (at, end, resume, rewind) in connections {
        let head = sequence.iter().take_while(|(_, t)| *t < at).count() as u64;
        let resume_from = resume.then(|| last_seen.saturating_sub(rewind));
        actions.push(Action::Connected {
            at,
            head,
            resume_from,
        });
        if let Some(from) = resume_from {
            actions.extend((from + 1..=head).map(|seq| Action::Delivered { at, seq }));
            actions.push(Action::Resumed { at, from, head });
            last_seen = last_seen.max(head);
        }
        for seq in head + 1..=sequence.len() as u64 {
            let delivered_at = sequence[seq as usize - 1].1 + 1;
            if end.is_some_and(|end| delivered_at >= end) {
                break;
            }
            actions.push(Action::Delivered {
                at: delivered_at,
                seq,
            });
            last_seen = seq;
        }
        if let Some(at) = end {
            actions.push(Action::Disconnected { at });
        }
    }
    actions
}

/// Records the run, leaving out action `skip` (client, action index).
fn record(run: &Run, actions: &[Vec<Action>], skip: Option<(usize, usize)>) -> History {
    let rec = Recording::start();
    let sequence = run.sequence();
    let mut p = rec.publisher("p");
    for (i, m) in run.messages.iter().enumerate() {
        let op = p.invoke_at(invoked_at(i), &id(i));
        let answered_at = invoked_at(i) + 50;
        match m.fate {
            Fate::Acked => p.ok_at(op, answered_at),
            Fate::Failed => p.fail_at(op, answered_at, "rate_limited"),
            Fate::Unknown => p.unknown_at(op, answered_at),
            Fate::Silent => {}
        }
    }
    drop(p);
    for (k, client) in actions.iter().enumerate() {
        let mut log = rec.client(format!("c{k}"));
        for (n, action) in client.iter().enumerate() {
            if skip == Some((k, n)) {
                continue;
            }
            match *action {
                Action::Connected {
                    at,
                    head,
                    resume_from,
                } => log.connected_at(at, head, resume_from),
                Action::Delivered { at, seq } => {
                    log.delivered_at(at, seq, &id(sequence[seq as usize - 1].0))
                }
                Action::Resumed { at, from, head } => log.resumed_at(at, from, head),
                Action::Disconnected { at } => log.disconnected_at(at, "chaos"),
            }
        }
        let still_there = !matches!(client.last(), Some(Action::Disconnected { .. }));
        if run.torn_down && still_there {
            log.disconnected_at(DRAINED_AT_US + 1, "shutdown");
        }
    }
    if run.torn_down {
        rec.drained_at(DRAINED_AT_US);
    }
    if run.stored {
        let ids: Vec<String> = sequence.iter().map(|&(i, _)| id(i)).collect();
        rec.stored(
            ids.iter()
                .enumerate()
                .map(|(s, m)| (s as u64 + 1, m.as_str())),
        );
    }
    rec.finish().expect("every log handed back")
}

/// Deliveries a client was surely owed: an acknowledged message's only
/// delivery, after the client's last fresh login, to a client that stays
/// to the end.
fn owed_deliveries(run: &Run, actions: &[Vec<Action>]) -> Vec<(usize, usize, u64)> {
    let plans = run.client_plans();
    let mut owed = Vec::new();
    for (k, client) in actions.iter().enumerate() {
        if plans[k].leaves_after_us.is_some() {
            continue;
        }
        let fresh = client.iter().rposition(|a| {
            matches!(
                a,
                Action::Connected {
                    resume_from: None,
                    ..
                }
            )
        });
        let times_received = |seq| {
            let same = |a: &&Action| matches!(a, Action::Delivered { seq: s, .. } if *s == seq);
            client.iter().filter(same).count()
        };
        for (n, action) in client.iter().enumerate().skip(fresh.map_or(0, |f| f + 1)) {
            if let Action::Delivered { seq, .. } = *action {
                if run.acked_at_seq(seq) && times_received(seq) == 1 {
                    owed.push((k, n, seq));
                }
            }
        }
    }
    owed
}

fn simulate_all(run: &Run) -> Vec<Vec<Action>> {
    let sequence = run.sequence();
    let plans = run.client_plans();
    plans.iter().map(|p| simulate(p, &sequence)).collect()
}

proptest! {
    #[test]
    fn a_clean_fan_out_history_is_valid(run in run()) {
        let actions = simulate_all(&run);
        let v = record(&run, &actions, None).check();
        prop_assert!(v.valid, "{}", v);
        let t = &v.totals;
        prop_assert_eq!((t.lost, t.unexpected, t.gaps, t.order_violations), (0, 0, 0, 0));
        let acked = run.messages.iter().filter(|m| m.fate == Fate::Acked).count() as u64;
        prop_assert_eq!(v.clients[0].expected, acked);
        prop_assert_eq!(t.acknowledged, acked);
    }

    #[test]
    fn one_dropped_owed_delivery_is_exactly_one_loss(mut run in run(), pick in any::<Index>()) {
        // Stored rows keep the message's seq known even if the only client
        // that received it is the one that loses it.
        run.stored = true;
        let actions = simulate_all(&run);
        let owed = owed_deliveries(&run, &actions);
        prop_assume!(!owed.is_empty());
        let (client, action, seq) = *pick.get(&owed);
        let h = record(&run, &actions, Some((client, action)));
        let v = h.check();
        let name = format!("c{client}");
        let message = id(run.sequence()[seq as usize - 1].0);
        prop_assert_eq!(&v.lost, std::slice::from_ref(&message), "{}", v);
        prop_assert_eq!(v.count(AnomalyKind::Lost), 1, "{}", v);
        prop_assert_eq!(v.count(AnomalyKind::Gap), 1, "{}", v);
        let invalid: u64 = v
            .anomaly_counts
            .iter()
            .filter(|(kind, _)| kind.invalidates())
            .map(|(_, n)| n)
            .sum();
        prop_assert_eq!(invalid, 2, "{}", v);
        let lost = v.of_kind(AnomalyKind::Lost).next().cloned();
        let lost = lost.expect("the lost anomaly");
        prop_assert_eq!(lost.client.as_deref(), Some(name.as_str()));
        prop_assert_eq!(lost.seqs.map(|s| (s.first, s.last)), Some((seq, seq)));
        prop_assert_eq!(lost.message_id, Some(message));
        let gap = v.of_kind(AnomalyKind::Gap).next().cloned().expect("the gap");
        prop_assert_eq!(gap.client.as_deref(), Some(name.as_str()));
        prop_assert_eq!(gap.seqs.map(|s| (s.first, s.last)), Some((seq, seq)));
        for c in &v.clients {
            prop_assert_eq!(c.lost, u64::from(c.client == name));
        }
    }
}
