//! The load engine: the fleet of simulated clients ([`fleet`]: bring-up,
//! syncs, the connect summary) built from its options ([`fleet_options`]),
//! one client of it ([`fleet_client`]) getting onto the server ([`dial`]) and
//! counting what arrives ([`inbox`]), as a NATS subscriber too
//! ([`nats_sub`]), and acting out client faults ([`faults`]); the open-loop
//! publishers, one file per transport ([`publisher`]); delivery accounting
//! ([`accounting`]; per room and membership: [`room_accounting`]); the live counters and line ([`live`]); and one measured
//! phase over them all ([`phase`]); room workloads driven over protocol v2
//! ([`rooms`]).

pub mod accounting;
pub mod dial;
pub mod faults;
pub mod fleet;
pub mod fleet_client;
pub mod fleet_options;
pub mod inbox;
pub mod live;
pub mod nats_sub;
pub mod phase;
pub mod publisher;
pub mod room_accounting;
pub mod rooms;
