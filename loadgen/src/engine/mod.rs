//! The load engine: the fleet of simulated clients ([`fleet`]) and the faults
//! it acts out ([`faults`]), a fleet client as a NATS subscriber
//! ([`nats_sub`]), the open-loop publishers ([`publisher`]), delivery
//! accounting ([`accounting`]), the live counters and line ([`live`]), and
//! one measured phase over them ([`phase`]).

pub mod accounting;
pub mod faults;
pub mod fleet;
pub mod live;
pub mod nats_sub;
pub mod phase;
pub mod publisher;
