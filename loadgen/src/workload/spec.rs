//! The `[workload]` table of a profile: rooms, their size distribution,
//! memberships, how the publish rate splits over rooms, direct messages,
//! churn, body sizes and the seed. Absent, a run is the global room of
//! protocol v1 exactly as before.

use serde::{Deserialize, Serialize};

/// A room workload (loadgen/README.md, "Room workloads"). The run's
/// `load.clients`, `load.rate_per_sec` (all messages, rooms and direct) and
/// `load.duration_secs` still apply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadProfile {
    /// Public rooms created for the run.
    pub rooms: usize,
    /// How the memberships spread over the rooms.
    pub room_size: RoomSize,
    /// Rooms each client joins (exactly this many, all distinct).
    pub memberships_per_client: usize,
    /// How the room messages' rate splits over the rooms.
    pub rate: RateSplit,
    /// Fraction of all messages sent as direct messages (`send` with `to`),
    /// from a random client to another.
    pub dm_share: f64,
    /// Leaves and (re)joins per second while publishing, all clients together.
    pub churn_per_sec: f64,
    /// Message body size.
    pub body_bytes: BodyBytes,
    /// Draws everything (assignment, schedule, churn); unset = a fresh one,
    /// which the report prints so the run can be repeated.
    pub seed: Option<u64>,
}

impl Default for WorkloadProfile {
    fn default() -> Self {
        Self {
            rooms: 10,
            room_size: RoomSize::Fixed,
            memberships_per_client: 1,
            rate: RateSplit::Uniform,
            dm_share: 0.0,
            churn_per_sec: 0.0,
            body_bytes: BodyBytes::Fixed(16),
            seed: None,
        }
    }
}

/// Room sizes; whatever the distribution, the sizes add up to
/// `clients × memberships_per_client` and no room is larger than `clients`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RoomSize {
    /// Every room the same size (±1).
    Fixed,
    /// Sizes drawn uniformly in `min..=max`, then moved within those bounds
    /// until they add up.
    Uniform { min: usize, max: usize },
    /// Room `k` (0 = the largest) has a size ∝ `1 / (k+1)^exponent`, at
    /// least 1 member.
    Zipf { exponent: f64 },
}

/// How room messages spread over the rooms.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RateSplit {
    /// Every room the same rate.
    #[default]
    Uniform,
    /// A room's rate ∝ its size (big rooms talk more).
    BySize,
}

/// A body size: `16`, or `{ min = 16, max = 512 }` drawn per message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BodyBytes {
    Fixed(usize),
    Range { min: usize, max: usize },
}

/// A workload that cannot be built for the run.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("workload: {0}")]
pub struct WorkloadError(pub String);

impl WorkloadProfile {
    /// Checks the table against the run's client count.
    pub fn validate(&self, clients: usize) -> Result<(), WorkloadError> {
        let fail = |m: String| Err(WorkloadError(m));
        if self.rooms == 0 {
            return fail("`rooms` must be at least 1".into());
        }
        if clients == 0 {
            return fail("a room workload needs at least 1 client".into());
        }
        if self.memberships_per_client == 0 || self.memberships_per_client > self.rooms {
            return fail(format!(
                "`memberships_per_client` = {} must be within 1..={} (rooms)",
                self.memberships_per_client, self.rooms
            ));
        }
        if !(0.0..=1.0).contains(&self.dm_share) {
            return fail(format!(
                "`dm_share` = {} is not within 0..=1",
                self.dm_share
            ));
        }
        if self.dm_share > 0.0 && clients < 2 {
            return fail("direct messages need at least 2 clients".into());
        }
        if !(self.churn_per_sec >= 0.0 && self.churn_per_sec.is_finite()) {
            return fail(format!(
                "`churn_per_sec` = {} is not ≥ 0",
                self.churn_per_sec
            ));
        }
        match self.room_size {
            RoomSize::Fixed => {}
            RoomSize::Uniform { min, max } if min == 0 || min > max => {
                return fail(format!(
                    "room_size uniform {{ min = {min}, max = {max} }}: need 1 ≤ min ≤ max"
                ))
            }
            RoomSize::Uniform { .. } => {}
            RoomSize::Zipf { exponent } if !(exponent > 0.0 && exponent.is_finite()) => {
                return fail(format!("room_size zipf: exponent {exponent} must be > 0"))
            }
            RoomSize::Zipf { .. } => {}
        }
        match self.body_bytes {
            BodyBytes::Range { min, max } if min > max => fail(format!(
                "body_bytes {{ min = {min}, max = {max} }}: min > max"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<WorkloadProfile, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn every_shape_of_the_table_parses() {
        let w = parse(
            "rooms = 2000\nroom_size = { zipf = { exponent = 1.1 } }\nmemberships_per_client = 5\n\
             rate = \"by_size\"\ndm_share = 0.1\nchurn_per_sec = 20.0\n\
             body_bytes = { min = 16, max = 256 }\nseed = 42\n",
        )
        .unwrap();
        assert_eq!(w.room_size, RoomSize::Zipf { exponent: 1.1 });
        assert_eq!(w.rate, RateSplit::BySize);
        assert_eq!(w.body_bytes, BodyBytes::Range { min: 16, max: 256 });
        assert_eq!(w.seed, Some(42));
        let w = parse("room_size = \"fixed\"\nbody_bytes = 64\n").unwrap();
        assert_eq!(w.room_size, RoomSize::Fixed);
        assert_eq!(w.body_bytes, BodyBytes::Fixed(64));
        assert_eq!(w.seed, None);
        let w = parse("room_size = { uniform = { min = 2, max = 9 } }\n").unwrap();
        assert_eq!(w.room_size, RoomSize::Uniform { min: 2, max: 9 });
        assert!(parse("roomz = 3\n").is_err());
        assert!(parse("room_size = \"gaussian\"\n").is_err());
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = WorkloadProfile::default();
        assert_eq!(ok.validate(10), Ok(()));
        let bad = |w: WorkloadProfile, clients: usize, needle: &str| {
            let e = w.validate(clients).expect_err(needle);
            assert!(e.0.contains(needle), "{e} lacks {needle}");
        };
        bad(
            WorkloadProfile {
                rooms: 0,
                ..ok.clone()
            },
            10,
            "rooms",
        );
        bad(
            WorkloadProfile {
                memberships_per_client: 11,
                ..ok.clone()
            },
            10,
            "memberships_per_client",
        );
        bad(
            WorkloadProfile {
                dm_share: 1.5,
                ..ok.clone()
            },
            10,
            "dm_share",
        );
        bad(
            WorkloadProfile {
                dm_share: 0.5,
                ..ok.clone()
            },
            1,
            "2 clients",
        );
        bad(
            WorkloadProfile {
                churn_per_sec: -1.0,
                ..ok.clone()
            },
            10,
            "churn_per_sec",
        );
        bad(
            WorkloadProfile {
                room_size: RoomSize::Uniform { min: 5, max: 2 },
                ..ok.clone()
            },
            10,
            "min ≤ max",
        );
        bad(
            WorkloadProfile {
                room_size: RoomSize::Zipf { exponent: 0.0 },
                ..ok.clone()
            },
            10,
            "exponent",
        );
        bad(
            WorkloadProfile {
                body_bytes: BodyBytes::Range { min: 9, max: 1 },
                ..ok.clone()
            },
            10,
            "body_bytes",
        );
    }
}
