//! What rtmc is measured against: the Redis pub/sub floor ([`floor`]), the
//! NATS core and JetStream peers ([`nats_peer`]) and the raw loopback
//! blaster ([`blaster`]), the physical floor of CPU per delivery.

pub mod blaster;
pub mod floor;
pub mod nats_peer;
