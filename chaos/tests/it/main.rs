//! rtmc-chaos integration tests (one binary): each toxic and fault measured
//! on real loopback servers, the Toxiproxy-compatible API driven as
//! Toxiproxy's clients drive it, and the `chaos` binary; then whole rtmc
//! stacks (containers, in-process components, `rtmc` processes) under light
//! load with a fault on one link (`links`) or a real outage (`outages`).
//! Everything listens on 127.0.0.1 and every wait is bounded. The stack
//! suites need a Docker engine and the `rtmc` binary
//! (`cargo build -p rtmc-system --bins`).

mod api;
mod checker_e2e;
mod client;
mod faults;
mod layers;
mod links;
mod outages;
mod recorded;
mod room_scenario;
mod scenario_run;
mod store_outages;
mod support;
mod toxics;

pub use rtmc_chaos::ms;
