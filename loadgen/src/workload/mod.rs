//! Room workloads: the optional `[workload]` table of a profile ([`spec`]),
//! the seeded random numbers every draw comes from ([`rng`]), who is in which
//! room and at what rate each room is posted to ([`assign`]), the publish
//! and churn schedules ([`schedule`]), and all of it for one run ([`plan`]). Everything here is a pure function of
//! (profile, seed), so a run repeats exactly from the seed its report prints.

pub mod assign;
pub mod plan;
pub mod rng;
pub mod schedule;
pub mod spec;
