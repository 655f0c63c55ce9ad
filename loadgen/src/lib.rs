//! rtmc's load generator as a library: thousands of simulated clients
//! ([`clients`]) speaking rtmc or Redis pub/sub ([`wire`], [`resp`]),
//! open-loop publishers ([`publisher`]), delivery accounting
//! ([`accounting`]), live counters ([`live`]), latency histograms and their
//! files ([`histogram`]), measured phases ([`phase`]) composed by [`run`]
//! into a fixed-rate run, a capacity ramp ([`ramp`]), the Redis pub/sub
//! floor ([`floor`]) and the NATS core and JetStream peers ([`nats_peer`],
//! speaking [`nats_wire`] through [`nats_sub`]); the verdict ([`verdict`]), reports ([`report`]),
//! plots ([`plot`]), the ingest path's hops one at a time ([`hops`]), a self-check ([`selfcheck`]), several processes'
//! reports merged ([`merge`]), profiles ([`profile`]) and the target,
//! embedded or running ([`stack`]). Client faults ([`client_faults`]) and
//! event hooks ([`observe`]) let the chaos runner drive and record a run
//! with this engine. The `loadgen` binary is a thin CLI over it.

pub mod accounting;
pub mod blaster;
pub mod client_faults;
pub mod clients;
pub mod cpu;
pub mod floor;
pub mod histogram;
pub mod hops;
pub mod live;
pub mod merge;
pub mod nats_peer;
pub mod nats_sub;
pub mod nats_wire;
pub mod observe;
pub mod phase;
pub mod plot;
pub mod profile;
pub mod publisher;
pub mod ramp;
pub mod report;
pub mod resp;
pub mod rounds;
pub mod run;
pub mod selfcheck;
pub mod stack;
pub mod verdict;
pub mod wire;
