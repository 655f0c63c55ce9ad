//! Generated room runs. A small model of a correct server sequences each
//! room's messages and delivers them to the room's connected members while
//! clients join, leave, drop and come back (resuming their rooms, or
//! fresh), with a direct room between the first two clients; the run may
//! end with the clients torn down after it drained. The clean history must
//! be valid; with one anomaly of each kind injected (a lost delivery, a
//! duplicate, two deliveries swapped, a seq nobody acknowledged missing,
//! a delivery to a non-member) exactly that anomaly must be found, at that
//! client, room and seq.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;

use super::super::{AnomalyKind, Verdict};
use crate::history::{History, Recording};

/// The direct room between clients 0 and 1.
const DM: &str = "dm:c0:c1";
/// After everything in a generated run.
const DRAINED_AT_US: u64 = 1_000_000;

/// How a publish ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acked,
    /// No answer, yet sequenced and delivered (allowed: recovered).
    UnknownSequenced,
    /// Refused and never sequenced.
    Refused,
}

/// One step of a generated run (indices are reduced modulo the counts).
#[derive(Debug, Clone, Copy)]
enum Step {
    Publish { room: usize, fate: Fate },
    Join { client: usize, room: usize },
    Leave { client: usize, room: usize },
    Drop { client: usize },
    Back { client: usize, resume: bool },
}

#[derive(Debug, Clone)]
struct Run {
    clients: usize,
    /// Public rooms `r0 …`; the direct room comes after them.
    rooms: usize,
    steps: Vec<Step>,
    torn_down: bool,
}

/// What a client saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Connected {
        rooms: Vec<(usize, u64)>,
        resume: Vec<(usize, u64)>,
    },
    Joined(usize, u64),
    Left(usize, u64),
    /// `(room, seq, live)`: live, or part of a resume replay.
    Delivered(usize, u64, bool),
    Resumed(usize, u64, u64),
    Disconnected,
}

fn step(clients: usize, rooms: usize) -> impl Strategy<Value = Step> {
    let fate = prop_oneof![
        6 => Just(Fate::Acked),
        1 => Just(Fate::UnknownSequenced),
        1 => Just(Fate::Refused),
    ];
    let c = 0..clients;
    let r = 0..rooms + 1;
    prop_oneof![
        6 => (r.clone(), fate).prop_map(|(room, fate)| Step::Publish { room, fate }),
        2 => (c.clone(), r.clone()).prop_map(|(client, room)| Step::Join { client, room }),
        1 => (c.clone(), r).prop_map(|(client, room)| Step::Leave { client, room }),
        1 => c.clone().prop_map(|client| Step::Drop { client }),
        2 => (c, any::<bool>()).prop_map(|(client, resume)| Step::Back { client, resume }),
    ]
}

fn run() -> impl Strategy<Value = Run> {
    (2..5usize, 1..4usize).prop_flat_map(|(clients, rooms)| {
        (
            prop::collection::vec(step(clients, rooms), 1..60),
            any::<bool>(),
        )
            .prop_map(move |(steps, torn_down)| Run {
                clients,
                rooms,
                steps,
                torn_down,
            })
    })
}

/// A room's id in the history.
fn room_name(run: &Run, room: usize) -> String {
    if room == run.rooms {
        DM.to_owned()
    } else {
        format!("r{room}")
    }
}

fn message_id(room: usize, k: usize) -> String {
    format!("m{room}-{k}")
}

/// The model server's state.
#[derive(Debug, Default)]
struct Model {
    /// Per room: the message index behind each seq (seq `i + 1`).
    sequenced: Vec<Vec<usize>>,
    /// Per room: every publish (message index, fate).
    publishes: Vec<Vec<Fate>>,
    connected: Vec<bool>,
    /// Per client: its rooms and the last seq it holds of each.
    held: Vec<BTreeMap<usize, u64>>,
    seen: Vec<Vec<(u64, Seen)>>,
}

impl Model {
    fn head(&self, room: usize) -> u64 {
        self.sequenced[room].len() as u64
    }

    fn see(&mut self, client: usize, at_us: u64, seen: Seen) {
        self.seen[client].push((at_us, seen));
    }
}

/// What the model server does over the run.
fn simulate(run: &Run) -> Model {
    let rooms = run.rooms + 1;
    let mut m = Model {
        sequenced: vec![Vec::new(); rooms],
        publishes: vec![Vec::new(); rooms],
        connected: vec![true; run.clients],
        held: vec![BTreeMap::new(); run.clients],
        seen: vec![Vec::new(); run.clients],
    };
    for c in 0..run.clients {
        if c < 2 {
            m.held[c].insert(run.rooms, 0);
        }
        let listed: Vec<(usize, u64)> = m.held[c].iter().map(|(&r, &s)| (r, s)).collect();
        m.see(
            c,
            0,
            Seen::Connected {
                rooms: listed,
                resume: Vec::new(),
            },
        );
    }
    for (i, &s) in run.steps.iter().enumerate() {
        apply(run, &mut m, s, 100 * (i as u64 + 1));
    }
    m
}

fn apply(run: &Run, m: &mut Model, step: Step, at: u64) {
    match step {
        Step::Publish { room, fate } => {
            let k = m.publishes[room].len();
            m.publishes[room].push(fate);
            if fate == Fate::Refused {
                return;
            }
            m.sequenced[room].push(k);
            let seq = m.head(room);
            for c in 0..run.clients {
                if m.connected[c] && m.held[c].contains_key(&room) {
                    m.held[c].insert(room, seq);
                    m.see(c, at, Seen::Delivered(room, seq, true));
                }
            }
        }
        Step::Join { client, room } => {
            let public = room < run.rooms;
            if public && m.connected[client] && !m.held[client].contains_key(&room) {
                let head = m.head(room);
                m.held[client].insert(room, head);
                m.see(client, at, Seen::Joined(room, head));
            }
        }
        Step::Leave { client, room } => {
            let public = room < run.rooms;
            if public && m.connected[client] && m.held[client].remove(&room).is_some() {
                let head = m.head(room);
                m.see(client, at, Seen::Left(room, head));
            }
        }
        Step::Drop { client } if m.connected[client] => {
            m.connected[client] = false;
            m.see(client, at, Seen::Disconnected);
        }
        Step::Back { client, resume } if !m.connected[client] => back(m, client, resume, at),
        Step::Drop { .. } | Step::Back { .. } => {}
    }
}

/// A reconnect: `login_ok` lists the client's rooms; resuming, each is
/// replayed from what it holds.
fn back(m: &mut Model, client: usize, resume: bool, at: u64) {
    m.connected[client] = true;
    let held: Vec<(usize, u64)> = m.held[client].iter().map(|(&r, &s)| (r, s)).collect();
    let listed = held.iter().map(|&(r, _)| (r, m.head(r))).collect();
    let asked = if resume { held.clone() } else { Vec::new() };
    m.see(
        client,
        at,
        Seen::Connected {
            rooms: listed,
            resume: asked,
        },
    );
    for (room, from) in held {
        let head = m.head(room);
        if resume {
            for seq in from + 1..=head {
                m.see(client, at, Seen::Delivered(room, seq, false));
            }
            m.see(client, at, Seen::Resumed(room, from, head));
        }
        m.held[client].insert(room, head);
    }
}

/// Records the model's run, each client's sightings as `edit` rewrites
/// them.
fn record(
    run: &Run,
    m: &Model,
    edit: impl Fn(usize, &[(u64, Seen)]) -> Vec<(u64, Seen)>,
) -> History {
    let rec = Recording::start();
    let mut p = rec.publisher("owners");
    for (room, fates) in m.publishes.iter().enumerate() {
        for (k, fate) in fates.iter().enumerate() {
            let at = 10 * k as u64;
            let op = p.invoke_in_at(at, Some(&room_name(run, room)), &message_id(room, k));
            match fate {
                Fate::Acked => p.ok_at(op, at + 5),
                Fate::UnknownSequenced => p.unknown_at(op, at + 5),
                Fate::Refused => p.fail_at(op, at + 5, "rate_limited"),
            }
        }
    }
    drop(p);
    for c in 0..run.clients {
        let mut log = rec.client(format!("c{c}"));
        let names = |list: &[(usize, u64)]| -> Vec<(String, u64)> {
            list.iter().map(|&(r, s)| (room_name(run, r), s)).collect()
        };
        for (at, seen) in edit(c, &m.seen[c]) {
            match seen {
                Seen::Connected { rooms, resume } => {
                    let (rooms, resume) = (names(&rooms), names(&resume));
                    log.rooms_connected_at(at, &borrowed(&rooms), &borrowed(&resume));
                }
                Seen::Joined(r, seq) => log.joined_at(at, &room_name(run, r), seq),
                Seen::Left(r, seq) => log.left_at(at, &room_name(run, r), seq),
                Seen::Delivered(r, seq, _) => {
                    let k = m.sequenced[r][seq as usize - 1];
                    log.room_delivered_at(at, &room_name(run, r), seq, &message_id(r, k));
                }
                Seen::Resumed(r, from, head) => {
                    log.room_resumed_at(at, &room_name(run, r), from, head)
                }
                Seen::Disconnected => log.disconnected_at(at, "chaos"),
            }
        }
        if run.torn_down && m.connected[c] {
            log.disconnected_at(DRAINED_AT_US + 1, "shutdown");
        }
    }
    if run.torn_down {
        rec.drained_at(DRAINED_AT_US);
    }
    let mut rows = Vec::new();
    for (room, ks) in m.sequenced.iter().enumerate() {
        for (i, &k) in ks.iter().enumerate() {
            rows.push((room_name(run, room), i as u64 + 1, message_id(room, k)));
        }
    }
    rec.stored_rooms(rows.iter().map(|(r, s, id)| (r.as_str(), *s, id.as_str())));
    rec.finish().expect("every log handed back")
}

fn borrowed(list: &[(String, u64)]) -> Vec<(&str, u64)> {
    list.iter().map(|(r, s)| (r.as_str(), *s)).collect()
}

fn as_recorded(_: usize, seen: &[(u64, Seen)]) -> Vec<(u64, Seen)> {
    seen.to_vec()
}

/// Anomaly counts of the kinds that make a run invalid.
fn invalid_counts(v: &Verdict) -> BTreeMap<AnomalyKind, u64> {
    let kinds = v.anomaly_counts.iter().filter(|(k, _)| k.invalidates());
    kinds.map(|(k, n)| (*k, *n)).collect()
}

/// Live deliveries `(client, position, room, seq)` the client was surely
/// owed: the next thing it learns of that room shows a seq at least as
/// high (a later delivery, its leave point, a resume), or it is still a
/// member when the run ends.
fn owed_live(run: &Run, m: &Model) -> Vec<(usize, usize, usize, u64)> {
    let mut owed = Vec::new();
    for (c, seen) in m.seen.iter().enumerate() {
        for (n, (_, s)) in seen.iter().enumerate() {
            let &Seen::Delivered(room, seq, true) = s else {
                continue;
            };
            if confirmed_later(&seen[n + 1..], room, seq, m.connected[c] || run.torn_down) {
                owed.push((c, n, room, seq));
            }
        }
    }
    owed
}

fn confirmed_later(later: &[(u64, Seen)], room: usize, seq: u64, there_at_end: bool) -> bool {
    let mut away = false;
    for (_, s) in later {
        match s {
            Seen::Delivered(r, s2, _) if *r == room && *s2 > seq => return true,
            Seen::Left(r, l) if *r == room => return *l >= seq,
            Seen::Resumed(r, _, head) if *r == room => return *head >= seq,
            Seen::Disconnected => away = true,
            Seen::Connected { resume, .. } if away => {
                if !resume.iter().any(|(r, _)| *r == room) {
                    return false;
                }
                away = false;
            }
            _ => {}
        }
    }
    !away && there_at_end
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_clean_room_run_is_valid(run in run()) {
        let m = simulate(&run);
        let v = record(&run, &m, as_recorded).check();
        prop_assert!(v.valid, "{}", v);
        prop_assert_eq!(invalid_counts(&v), BTreeMap::new(), "{}", v);
        prop_assert_eq!(v.count(AnomalyKind::DuplicatedInTransit), 0, "{}", v);
        let acked: usize = m.publishes.iter().flatten().filter(|f| **f == Fate::Acked).count();
        prop_assert_eq!(v.totals.acknowledged, acked as u64);
        prop_assert_eq!(v.stored_rooms.as_ref().map(|s| s.lost), Some(0));
    }

    #[test]
    fn one_dropped_owed_delivery_is_exactly_one_loss(run in run(), pick in any::<Index>()) {
        let m = simulate(&run);
        let acked = |room: usize, seq: u64| {
            m.publishes[room][m.sequenced[room][seq as usize - 1]] == Fate::Acked
        };
        let owed: Vec<_> = owed_live(&run, &m).into_iter().filter(|&(_, _, r, s)| acked(r, s)).collect();
        prop_assume!(!owed.is_empty());
        let (client, n, room, seq) = *pick.get(&owed);
        let v = record(&run, &m, |c, seen| {
            let mut seen = seen.to_vec();
            if c == client {
                seen.remove(n);
            }
            seen
        }).check();
        let expected: BTreeMap<_, _> = [(AnomalyKind::Lost, 1), (AnomalyKind::Gap, 1)].into();
        prop_assert_eq!(invalid_counts(&v), expected, "{}", v);
        for kind in [AnomalyKind::Lost, AnomalyKind::Gap] {
            let a = v.of_kind(kind).next().cloned().expect("the anomaly");
            prop_assert_eq!(a.client, Some(format!("c{client}")));
            prop_assert_eq!(a.room, Some(room_name(&run, room)));
            prop_assert_eq!(a.seqs.map(|s| (s.first, s.last)), Some((seq, seq)));
        }
    }

    #[test]
    fn one_injected_anomaly_is_found_exactly(run in run(), kind in 0..4u8, pick in any::<Index>()) {
        let m = simulate(&run);
        let owed = owed_live(&run, &m);
        let unacked = |&&(_, _, r, s): &&(usize, usize, usize, u64)| {
            m.publishes[r][m.sequenced[r][s as usize - 1]] != Fate::Acked
        };
        let (candidates, expect): (Vec<_>, AnomalyKind) = match kind {
            0 => (owed.clone(), AnomalyKind::DuplicatedInTransit),
            1 => (swappable(&m), AnomalyKind::OrderViolation),
            2 => (owed.iter().filter(unacked).copied().collect(), AnomalyKind::Gap),
            _ => (leakable(&run, &m), AnomalyKind::Leak),
        };
        prop_assume!(!candidates.is_empty());
        let (client, n, room, seq) = *pick.get(&candidates);
        let v = record(&run, &m, |c, seen| {
            let mut seen = seen.to_vec();
            if c == client {
                inject(&mut seen, kind, n, room, seq);
            }
            seen
        }).check();
        let invalid = invalid_counts(&v);
        let expected: BTreeMap<_, _> = match expect {
            AnomalyKind::DuplicatedInTransit => BTreeMap::new(),
            other => [(other, 1)].into(),
        };
        prop_assert_eq!(invalid, expected, "{}", v);
        prop_assert_eq!(v.count(expect), 1, "{}", v);
        let a = v.of_kind(expect).next().cloned().expect("the anomaly");
        prop_assert_eq!(a.client, Some(format!("c{client}")));
        prop_assert_eq!(a.room, Some(room_name(&run, room)));
        prop_assert_eq!(a.seqs.map(|s| s.first), Some(seq));
        prop_assert!(v.lost.is_empty(), "{}", v);
    }
}

/// Rewrites one client's sightings: 0 repeats delivery `n`, 1 swaps it
/// with the next, 2 drops it, 3 inserts a delivery of `room`'s `seq` at
/// `n`.
fn inject(seen: &mut Vec<(u64, Seen)>, kind: u8, n: usize, room: usize, seq: u64) {
    match kind {
        0 => {
            let copy = seen[n].clone();
            seen.insert(n + 1, copy);
        }
        1 => seen.swap(n, n + 1),
        2 => {
            seen.remove(n);
        }
        _ => {
            let at = seen.get(n).map_or(0, |(at, _)| *at);
            seen.insert(n, (at, Seen::Delivered(room, seq, true)));
        }
    }
}

/// Two live deliveries of one room in a row, the later one's seq swapped
/// before the earlier's: `(client, position of the first, room, seq of the
/// second)` — the one then received below a higher seq.
fn swappable(m: &Model) -> Vec<(usize, usize, usize, u64)> {
    let mut out = Vec::new();
    for (c, seen) in m.seen.iter().enumerate() {
        for (n, pair) in seen.windows(2).enumerate() {
            if let (Seen::Delivered(r1, _, true), Seen::Delivered(r2, s2, true)) =
                (&pair[0].1, &pair[1].1)
            {
                if r1 == r2 {
                    out.push((c, n, *r1, *s2 - 1));
                }
            }
        }
    }
    out
}

/// Places where a delivery would reach a non-member: a connected client,
/// a room it holds no membership of then, one of that room's seqs.
fn leakable(run: &Run, m: &Model) -> Vec<(usize, usize, usize, u64)> {
    let mut out = Vec::new();
    for (c, seen) in m.seen.iter().enumerate() {
        let mut rooms: BTreeSet<usize> = BTreeSet::new();
        let mut connected = false;
        for (n, (_, s)) in seen.iter().enumerate() {
            match s {
                Seen::Connected { rooms: listed, .. } => {
                    connected = true;
                    rooms = listed.iter().map(|(r, _)| *r).collect();
                }
                Seen::Joined(r, _) => {
                    rooms.insert(*r);
                }
                Seen::Left(r, _) => {
                    rooms.remove(r);
                }
                Seen::Disconnected => connected = false,
                _ => {}
            }
            let next_is_event = !matches!(
                seen.get(n + 1).map(|x| &x.1),
                Some(Seen::Delivered(_, _, false)) | Some(Seen::Resumed(..))
            );
            for room in (0..=run.rooms).filter(|r| connected && next_is_event && !rooms.contains(r))
            {
                if let Some(seq) = (1..=m.head(room)).last() {
                    out.push((c, n + 1, room, seq));
                }
            }
        }
    }
    out
}
