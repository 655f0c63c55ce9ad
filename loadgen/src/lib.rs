//! rtmc's load generator as a library: thousands of simulated clients
//! ([`clients`]), open-loop publishers ([`publisher`]), delivery accounting
//! ([`accounting`]), latency histograms and their files ([`histogram`]),
//! measured phases ([`phase`]) composed into a run, a capacity ramp
//! ([`ramp`]) and the Redis pub/sub floor ([`floor`]), with reports
//! ([`report`]), plots ([`plot`]) and a self-check ([`selfcheck`]). The
//! `loadgen` binary is a thin CLI over it.

pub mod accounting;
pub mod clients;
pub mod histogram;
pub mod live;
pub mod merge;
pub mod phase;
pub mod plot;
pub mod profile;
pub mod publisher;
pub mod report;
pub mod resp;
pub mod run;
pub mod selfcheck;
pub mod stack;
pub mod verdict;
pub mod wire;
