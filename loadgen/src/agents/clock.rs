//! Comparing an agent's wall clock with the coordinator's by the midpoint
//! method: the coordinator notes its time `t0`, asks the agent for its
//! time `a`, notes `t1` when the answer is in; the agent read its clock
//! somewhere in between, so its offset is `a − (t0 + t1) / 2`, known to
//! within half the round trip. Of several samples the one with the
//! shortest round trip is kept (the least room for error).

use serde::{Deserialize, Serialize};

/// One exchange: coordinator time before and after, agent time between (µs
/// since the epoch, each on its own wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// Coordinator clock when the question left.
    pub sent_us: u64,
    /// The agent's clock when it answered.
    pub agent_us: u64,
    /// Coordinator clock when the answer arrived.
    pub received_us: u64,
}

/// The agent clock's offset from the coordinator's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClockSkew {
    /// Agent clock minus coordinator clock, µs (positive: the agent is ahead).
    pub offset_us: i64,
    /// Round trip of the sample it came from, µs; the offset is known to
    /// within half of it.
    pub round_trip_us: u64,
}

impl ClockSample {
    /// This sample's offset and round trip.
    pub fn skew(&self) -> ClockSkew {
        let round_trip_us = self.received_us.saturating_sub(self.sent_us);
        let midpoint = i128::from(self.sent_us) + i128::from(round_trip_us) / 2;
        ClockSkew {
            offset_us: (i128::from(self.agent_us) - midpoint) as i64,
            round_trip_us,
        }
    }
}

/// The skew of the sample with the shortest round trip; `None` without samples.
pub fn best_skew(samples: &[ClockSample]) -> Option<ClockSkew> {
    samples
        .iter()
        .map(ClockSample::skew)
        .min_by_key(|s| s.round_trip_us)
}

impl ClockSkew {
    /// The largest the offset may really be: its size plus half the round trip.
    pub fn bound_us(&self) -> u64 {
        self.offset_us.unsigned_abs() + self.round_trip_us / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_midpoint_gives_the_offset_and_the_shortest_round_trip_wins() {
        // Agent 250 µs ahead; answered exactly at the midpoint.
        let a = ClockSample {
            sent_us: 1_000,
            agent_us: 1_750,
            received_us: 2_000,
        };
        assert_eq!(
            a.skew(),
            ClockSkew {
                offset_us: 250,
                round_trip_us: 1_000
            }
        );
        // An agent behind, over a faster exchange.
        let b = ClockSample {
            sent_us: 5_000,
            agent_us: 4_900,
            received_us: 5_200,
        };
        assert_eq!(b.skew().offset_us, -200);
        let best = best_skew(&[a, b]).unwrap();
        assert_eq!(best.round_trip_us, 200);
        assert_eq!(best.bound_us(), 300);
        assert_eq!(best_skew(&[]), None);
    }
}
