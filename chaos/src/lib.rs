//! rtmc-chaos: the fault injector (TCP fault proxy, scenario timelines,
//! history checker) — not built yet; its issue comes later. Service outages
//! in today's suites use `rtmc_testkit::Service::{stop, kill, pause}` and
//! `rtmc_testkit::NodeProcess::kill`.
