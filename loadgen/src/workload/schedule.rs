//! When each message is sent and where to, and when which client leaves or
//! rejoins which room. The publish schedule is open loop at the run's total
//! rate: tick `i` is due `i / rate` after the start, and its target (a room,
//! drawn by the rooms' rates, or a direct message between two clients) and
//! body size are drawn from the seed and `i` alone. The churn plan is drawn
//! up front, since who may leave depends on who left before.

use std::collections::HashSet;

use crate::workload::assign::Assignment;
use crate::workload::rng::SplitMix64;
use crate::workload::spec::{BodyBytes, WorkloadProfile};

const STREAM_PUBLISH: u64 = 3;
const STREAM_CHURN: u64 = 4;

/// Where one message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Room `k` of the assignment.
    Room(u32),
    /// A direct message from client `from` to client `to` (never the same).
    Direct { from: u32, to: u32 },
}

/// One message of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishEvent {
    /// Tick number, from 0.
    pub index: u64,
    /// Due this long after the start of publishing.
    pub due_us: u64,
    pub target: Target,
    pub body_bytes: usize,
}

/// The publish schedule of a run.
#[derive(Debug, Clone)]
pub struct PublishSchedule {
    /// All messages per second, rooms and direct.
    rate_per_sec: f64,
    /// Ticks in the run.
    ticks: u64,
    dm_share: f64,
    /// Cumulative room rates, normalised to end at 1.
    room_cdf: Vec<f64>,
    clients: u32,
    body: BodyBytes,
    seed: u64,
}

impl PublishSchedule {
    pub fn new(
        w: &WorkloadProfile,
        a: &Assignment,
        rate_per_sec: f64,
        duration_secs: f64,
        seed: u64,
    ) -> Self {
        let total: f64 = a.rates_per_sec.iter().sum();
        let mut acc = 0.0;
        let room_cdf = a
            .rates_per_sec
            .iter()
            .map(|r| {
                acc += if total > 0.0 {
                    r / total
                } else {
                    1.0 / a.rates_per_sec.len() as f64
                };
                acc
            })
            .collect();
        Self {
            rate_per_sec,
            ticks: (rate_per_sec * duration_secs).round().max(0.0) as u64,
            dm_share: w.dm_share,
            room_cdf,
            clients: a.memberships.len() as u32,
            body: w.body_bytes,
            seed,
        }
    }

    /// Messages in the run.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Tick `i`, drawn from the seed and `i` alone.
    pub fn event(&self, index: u64) -> PublishEvent {
        let mut rng = SplitMix64::for_item(self.seed, STREAM_PUBLISH, index);
        let target = if self.dm_share > 0.0 && rng.next_f64() < self.dm_share {
            let from = rng.below(u64::from(self.clients)) as u32;
            let mut to = rng.below(u64::from(self.clients) - 1) as u32;
            if to >= from {
                to += 1;
            }
            Target::Direct { from, to }
        } else {
            let u = rng.next_f64();
            let k = self.room_cdf.partition_point(|&c| c <= u);
            Target::Room(k.min(self.room_cdf.len() - 1) as u32)
        };
        let body_bytes = match self.body {
            BodyBytes::Fixed(n) => n,
            BodyBytes::Range { min, max } => rng.in_range(min as u64, max as u64) as usize,
        };
        PublishEvent {
            index,
            due_us: (index as f64 * 1e6 / self.rate_per_sec) as u64,
            target,
            body_bytes,
        }
    }
}

/// A leave or a (re)join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnAction {
    Leave,
    Join,
}

/// One membership change during publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnEvent {
    /// Due this long after the start of publishing.
    pub due_us: u64,
    pub client: u32,
    pub room: u32,
    pub action: ChurnAction,
}

/// The run's churn: `churn_per_sec × duration` events, evenly spaced. Each
/// is, with even odds while anyone is away, a random absent membership
/// coming back; otherwise a random present one leaving. So about half the
/// churned memberships are back by the end and a membership never leaves
/// twice in a row.
pub fn churn_plan(
    w: &WorkloadProfile,
    a: &Assignment,
    duration_secs: f64,
    seed: u64,
) -> Vec<ChurnEvent> {
    let count = (w.churn_per_sec * duration_secs).round().max(0.0) as u64;
    let mut rng = SplitMix64::for_item(seed, STREAM_CHURN, 0);
    let mut away: Vec<(u32, u32)> = Vec::new();
    let mut away_set: HashSet<(u32, u32)> = HashSet::new();
    let clients = a.memberships.len() as u64;
    let mut plan = Vec::with_capacity(count as usize);
    for i in 0..count {
        let due_us = ((i as f64 + 0.5) * 1e6 / w.churn_per_sec) as u64;
        if !away.is_empty() && rng.below(2) == 0 {
            let (client, room) = away.swap_remove(rng.below(away.len() as u64) as usize);
            away_set.remove(&(client, room));
            plan.push(ChurnEvent {
                due_us,
                client,
                room,
                action: ChurnAction::Join,
            });
            continue;
        }
        // A present membership: a few tries, then the event is skipped (only
        // when nearly everyone is away).
        for _ in 0..16 {
            let client = rng.below(clients) as u32;
            let rooms = &a.memberships[client as usize];
            let room = rooms[rng.below(rooms.len() as u64) as usize];
            if away_set.insert((client, room)) {
                away.push((client, room));
                plan.push(ChurnEvent {
                    due_us,
                    client,
                    room,
                    action: ChurnAction::Leave,
                });
                break;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::assign::assign;
    use crate::workload::spec::RoomSize;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn setup(dm_share: f64, churn_per_sec: f64) -> (WorkloadProfile, Assignment) {
        let w = WorkloadProfile {
            rooms: 20,
            room_size: RoomSize::Zipf { exponent: 1.0 },
            memberships_per_client: 3,
            rate: crate::workload::spec::RateSplit::BySize,
            dm_share,
            churn_per_sec,
            body_bytes: BodyBytes::Range { min: 8, max: 64 },
            seed: Some(5),
        };
        let a = assign(&w, 100, 1000.0 * (1.0 - dm_share), 5).unwrap();
        (w, a)
    }

    #[test]
    fn shares_and_rates_come_out_as_asked() {
        let (w, a) = setup(0.25, 0.0);
        let s = PublishSchedule::new(&w, &a, 1000.0, 40.0, 5);
        assert_eq!(s.ticks(), 40_000);
        let mut per_room = [0u64; 20];
        let mut dms = 0u64;
        for i in 0..s.ticks() {
            let e = s.event(i);
            assert!((8..=64).contains(&e.body_bytes));
            match e.target {
                Target::Room(k) => per_room[k as usize] += 1,
                Target::Direct { from, to } => {
                    assert_ne!(from, to);
                    assert!(from < 100 && to < 100);
                    dms += 1;
                }
            }
        }
        assert!((9_400..10_600).contains(&dms), "dm share: {dms} of 40000");
        // Room 0 is the largest and talks most (by size).
        let expect0 = a.rates_per_sec[0] / a.rates_per_sec.iter().sum::<f64>() * 30_000.0;
        assert!(
            (per_room[0] as f64 - expect0).abs() < 0.1 * expect0,
            "{} vs {expect0}",
            per_room[0]
        );
        assert_eq!(s.event(1000).due_us, 1_000_000);
    }

    #[test]
    fn churn_leaves_then_rejoins_memberships_it_owns() {
        let (w, a) = setup(0.0, 50.0);
        let plan = churn_plan(&w, &a, 10.0, 5);
        assert_eq!(plan.len(), 500);
        let mut state: HashMap<(u32, u32), bool> = HashMap::new();
        for e in &plan {
            assert!(a.memberships[e.client as usize].contains(&e.room));
            let present = state.entry((e.client, e.room)).or_insert(true);
            match e.action {
                ChurnAction::Leave => assert!(*present, "left while away: {e:?}"),
                ChurnAction::Join => assert!(!*present, "joined while present: {e:?}"),
            }
            *present = e.action == ChurnAction::Join;
        }
        assert!(plan.windows(2).all(|p| p[0].due_us < p[1].due_us));
        let joins = plan
            .iter()
            .filter(|e| e.action == ChurnAction::Join)
            .count();
        assert!(joins > 150 && joins < 250, "{joins} rejoins of 500");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// The schedule and the churn plan are functions of the seed.
        #[test]
        fn schedules_repeat_from_the_seed(seed in any::<u64>(), i in 0u64..10_000) {
            let (w, a) = setup(0.3, 20.0);
            let s = PublishSchedule::new(&w, &a, 500.0, 20.0, seed);
            prop_assert_eq!(s.event(i), PublishSchedule::new(&w, &a, 500.0, 20.0, seed).event(i));
            prop_assert_eq!(churn_plan(&w, &a, 5.0, seed), churn_plan(&w, &a, 5.0, seed));
        }
    }
}
