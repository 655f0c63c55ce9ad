//! rtmc-chaos integration tests (one binary): each toxic and fault measured
//! on real loopback servers, the Toxiproxy-compatible API driven as
//! Toxiproxy's clients drive it, and the `chaos` binary. Everything listens
//! on 127.0.0.1 and every wait is bounded.

mod api;
mod client;
mod faults;
mod support;
mod toxics;

pub use rtmc_chaos::ms;
