//! loadgen's one integration-test binary: a tiny embedded load against the
//! real stack (containers + the `rtmc` binary as child processes), the same
//! next to the floor and the NATS peers, and the
//! `loadgen` binary stopped by a signal; the engine's opt-ins for other
//! drivers; a run spread over two agents; a room workload with churn and
//! direct messages, accounted per room.

mod agents;
mod client_faults;
mod embedded_run;
mod hops;
mod layers;
mod nats_peers;
mod opt_ins;
mod rooms;
mod signals;
