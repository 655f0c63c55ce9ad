//! The protocols loadgen speaks on its hot path, each read straight out of a
//! buffer: rtmc's frames and broadcasts ([`rtmc_frames`]), just enough RESP for
//! the Redis floor ([`resp`]) and the NATS client protocol for the NATS peers
//! ([`nats`]).

pub mod nats;
pub mod resp;
pub mod rtmc_frames;
