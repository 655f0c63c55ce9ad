//! The whole drawn workload of one run: the seed it came from, the
//! assignment, the publish schedule and the churn plan.

use crate::workload::assign::{assign, Assignment};
use crate::workload::schedule::{churn_plan, ChurnEvent, PublishSchedule};
use crate::workload::spec::{WorkloadError, WorkloadProfile};

/// Rooms one publisher connection creates and posts to: under the server's
/// per-connection join burst (20 `create_room`/`join` a second) and far under
/// its rooms per user (100), so creating them is one burst.
pub const ROOMS_PER_PUBLISHER: usize = 16;

/// Publisher connections (users) a workload of `rooms` rooms needs.
pub fn room_publishers(rooms: usize) -> usize {
    rooms.div_ceil(ROOMS_PER_PUBLISHER)
}

/// The id of room `k` in run `run_id`: `lg<run hex>-r<k>`, a valid room id
/// (docs/PROTOCOL.md §17.1) that no other run uses.
pub fn room_id(run_id: u32, k: u32) -> String {
    format!("lg{run_id:08x}-r{k}")
}

/// Everything a room run acts out, drawn from one seed.
#[derive(Debug, Clone)]
pub struct WorkloadPlan {
    /// The seed used (the profile's, or a fresh one): the report prints it.
    pub seed: u64,
    pub assignment: Assignment,
    pub schedule: PublishSchedule,
    pub churn: Vec<ChurnEvent>,
}

impl WorkloadPlan {
    /// Draws the plan for `clients` clients publishing `rate_per_sec`
    /// messages per second (rooms and direct) for `duration_secs`.
    pub fn draw(
        w: &WorkloadProfile,
        clients: usize,
        rate_per_sec: f64,
        duration_secs: f64,
        seed: u64,
    ) -> Result<Self, WorkloadError> {
        let room_rate_per_sec = rate_per_sec * (1.0 - w.dm_share);
        let assignment = assign(w, clients, room_rate_per_sec, seed)?;
        let schedule = PublishSchedule::new(w, &assignment, rate_per_sec, duration_secs, seed);
        let churn = churn_plan(w, &assignment, duration_secs, seed);
        Ok(Self {
            seed,
            assignment,
            schedule,
            churn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::spec::RoomSize;

    #[test]
    fn a_plan_is_a_function_of_profile_and_seed() {
        let w = WorkloadProfile {
            rooms: 30,
            room_size: RoomSize::Zipf { exponent: 1.2 },
            memberships_per_client: 4,
            dm_share: 0.2,
            churn_per_sec: 10.0,
            ..Default::default()
        };
        let a = WorkloadPlan::draw(&w, 200, 400.0, 5.0, 11).unwrap();
        let b = WorkloadPlan::draw(&w, 200, 400.0, 5.0, 11).unwrap();
        let c = WorkloadPlan::draw(&w, 200, 400.0, 5.0, 12).unwrap();
        assert_eq!(a.assignment, b.assignment);
        assert_eq!(a.churn, b.churn);
        assert_eq!(a.schedule.ticks(), 2000);
        let events = |p: &WorkloadPlan| (0..2000).map(|i| p.schedule.event(i)).collect::<Vec<_>>();
        assert_eq!(events(&a), events(&b));
        assert_ne!(events(&a), events(&c), "another seed, another schedule");
        assert_ne!(a.assignment.memberships, c.assignment.memberships);
        assert_eq!(room_publishers(30), 2);
        assert_eq!(room_publishers(32), 2);
        assert_eq!(room_publishers(33), 3);
        assert_eq!(room_id(0xab, 7), "lg000000ab-r7");
        // 80 % of 400 msg/s go to rooms.
        assert!((a.assignment.rates_per_sec.iter().sum::<f64>() - 320.0).abs() < 1e-9);
    }
}
