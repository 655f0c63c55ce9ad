//! How a room workload maps onto a pub/sub peer (Redis pub/sub, NATS core):
//! every room and every direct pair of the schedule is a channel named
//! `room.<room id>` (a Redis channel, a NATS subject: one token after
//! `room.`, so JetStream's `room.*` would cover them all); each channel has
//! exactly one publisher connection, so its messages' order is that
//! connection's order and the per-room `seq` the publisher stamps is the
//! order every subscriber must see. Pure, so the mapping is unit-tested.

use std::collections::HashMap;
use std::sync::Arc;

use crate::workload::plan::{room_id, WorkloadPlan, ROOMS_PER_PUBLISHER};
use crate::workload::schedule::Target;

/// One room or direct pair as a peer channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChannel {
    /// The room id the payloads carry (`lg<run>-r<k>`, `dm:<a>:<b>`), so the
    /// accounting keeps rooms and direct rooms apart as on rtmc.
    pub room: Arc<str>,
    /// The channel / subject: `room.<room>`.
    pub subject: Arc<str>,
    /// The publisher connection that sends all of its messages.
    pub publisher: usize,
}

/// Every channel of a run, who publishes to each and who subscribes.
#[derive(Debug, Clone)]
pub struct PeerMap {
    /// Rooms `0..rooms` first (channel `k` is room `k`), then the direct
    /// pairs in the order the schedule first uses them.
    pub channels: Vec<PeerChannel>,
    /// The channels each subscriber subscribes to before publishing
    /// starts: client `i`'s rooms and direct pairs at `i`, then one owner
    /// per publisher with the rooms it posts to (rtmc's room owners are
    /// members of their rooms and get every message of them too).
    pub subscriptions: Vec<Vec<usize>>,
    /// Publisher connections (as many as rtmc's room owners).
    pub publishers: usize,
    /// Direct pair `(lo, hi)` of client indexes → channel.
    direct: HashMap<(u32, u32), usize>,
}

/// A room or user id that cannot be one NATS subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` cannot be a peer channel token (no '.', '*', '>' or whitespace)")]
pub struct BadToken(pub String);

/// The channel (Redis) / subject (NATS) of a room: `room.<room id>`.
pub fn subject_of(room: &str) -> Result<String, BadToken> {
    let bad = |c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace();
    if room.is_empty() || room.contains(bad) {
        return Err(BadToken(room.to_owned()));
    }
    Ok(format!("room.{room}"))
}

/// The direct room of two users, as rtmc names it: `dm:<a>:<b>`, `a` < `b`
/// in byte order (docs/PROTOCOL.md §17.1).
pub fn direct_room(a: &str, b: &str) -> String {
    let (lo, hi) = if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    format!("dm:{lo}:{hi}")
}

impl PeerMap {
    /// The map of `plan` for run `run_id`, users `<user_prefix>-<i>`.
    pub fn new(plan: &WorkloadPlan, run_id: u32, user_prefix: &str) -> Result<Self, BadToken> {
        let a = &plan.assignment;
        let rooms = a.sizes.len();
        let publishers = rooms.div_ceil(ROOMS_PER_PUBLISHER).max(1);
        let mut channels = Vec::with_capacity(rooms);
        for k in 0..rooms {
            let room = room_id(run_id, k as u32);
            channels.push(PeerChannel {
                subject: Arc::from(subject_of(&room)?),
                room: Arc::from(room),
                publisher: k / ROOMS_PER_PUBLISHER,
            });
        }
        let mut subscriptions: Vec<Vec<usize>> = a
            .memberships
            .iter()
            .map(|m| m.iter().map(|&k| k as usize).collect())
            .collect();
        let mut direct = HashMap::new();
        for i in 0..plan.schedule.ticks() {
            let Target::Direct { from, to } = plan.schedule.event(i).target else {
                continue;
            };
            let pair = (from.min(to), from.max(to));
            if direct.contains_key(&pair) {
                continue;
            }
            let c = channels.len();
            let room = direct_room(
                &format!("{user_prefix}-{}", pair.0),
                &format!("{user_prefix}-{}", pair.1),
            );
            channels.push(PeerChannel {
                subject: Arc::from(subject_of(&room)?),
                room: Arc::from(room),
                publisher: (c - rooms) % publishers,
            });
            direct.insert(pair, c);
            for client in [pair.0, pair.1] {
                if let Some(s) = subscriptions.get_mut(client as usize) {
                    s.push(c);
                }
            }
        }
        for k in 0..publishers {
            let first = k * ROOMS_PER_PUBLISHER;
            subscriptions.push((first..rooms.min(first + ROOMS_PER_PUBLISHER)).collect());
        }
        Ok(Self {
            channels,
            subscriptions,
            publishers,
            direct,
        })
    }

    /// The channel a tick of the schedule goes to.
    pub fn channel_of(&self, target: Target) -> Option<usize> {
        match target {
            Target::Room(k) => Some(k as usize).filter(|&k| k < self.channels.len()),
            Target::Direct { from, to } => self.direct.get(&(from.min(to), from.max(to))).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::WorkloadProfile;

    fn plan(dm_share: f64) -> WorkloadPlan {
        let toml = format!(
            "rooms = 40\nroom_size = \"fixed\"\nmemberships_per_client = 2\n\
             dm_share = {dm_share}\nchurn_per_sec = 2\nseed = 11\n"
        );
        let w: WorkloadProfile = toml::from_str(&toml).expect("a valid [workload]");
        WorkloadPlan::draw(&w, 50, 100.0, 3.0, 11).expect("drawable")
    }

    #[test]
    fn rooms_and_direct_pairs_are_room_subjects() {
        assert_eq!(subject_of("lg0000002a-r7").unwrap(), "room.lg0000002a-r7");
        assert_eq!(
            subject_of(&direct_room("lg-9", "lg-10")).unwrap(),
            "room.dm:lg-10:lg-9",
            "ordered by bytes, as rtmc names direct rooms"
        );
        for bad in ["a.b", "a b", "a*", ">", ""] {
            assert!(subject_of(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_tick_has_one_channel_with_one_publisher() {
        let p = plan(0.3);
        let m = PeerMap::new(&p, 42, "lg").unwrap();
        assert_eq!(m.publishers, 3, "40 rooms / 16 per publisher");
        assert_eq!(&*m.channels[0].room, "lg0000002a-r0");
        assert_eq!(m.channels[39].publisher, 2);
        assert!(m.channels.len() > 40, "the schedule has direct pairs");
        for i in 0..p.schedule.ticks() {
            let t = p.schedule.event(i).target;
            let c = m.channel_of(t).expect("every tick is mapped");
            let ch = &m.channels[c];
            assert!(ch.publisher < m.publishers);
            match t {
                Target::Room(k) => assert_eq!(c, k as usize),
                Target::Direct { from, to } => {
                    assert!(ch.room.starts_with("dm:"));
                    assert!(m.subscriptions[from as usize].contains(&c));
                    assert!(m.subscriptions[to as usize].contains(&c));
                    assert_eq!(m.channel_of(Target::Direct { from: to, to: from }), Some(c));
                }
            }
        }
    }

    #[test]
    fn clients_subscribe_to_their_rooms_and_the_same_seed_maps_the_same() {
        let p = plan(0.0);
        let m = PeerMap::new(&p, 1, "lg").unwrap();
        assert_eq!(m.channels.len(), 40, "no direct messages, no pairs");
        for (c, rooms) in p.assignment.memberships.iter().enumerate() {
            let want: Vec<usize> = rooms.iter().map(|&k| k as usize).collect();
            assert_eq!(m.subscriptions[c], want);
        }
        // Then the owners: publisher k's rooms, as rtmc's owners are members.
        let owners = &m.subscriptions[p.assignment.memberships.len()..];
        assert_eq!(owners.len(), 3);
        assert_eq!(owners[0], (0..16).collect::<Vec<_>>());
        assert_eq!(owners[2], (32..40).collect::<Vec<_>>());
        let again = PeerMap::new(&plan(0.3), 1, "lg").unwrap();
        let once = PeerMap::new(&plan(0.3), 1, "lg").unwrap();
        assert_eq!(again.channels, once.channels);
        assert!(
            PeerMap::new(&p, 1, "l.g").is_ok(),
            "rooms alone: no user in a subject"
        );
        assert!(PeerMap::new(&plan(0.3), 1, "l.g").is_err());
    }
}
