//! rtmc-ci: the latency regression gate (compare a run's histograms with a
//! stored baseline, robust to a noisy machine) — not built yet; its issue
//! comes later. The machine setup and test scripts live beside this crate
//! (`ci/setup.sh`, `ci/test.sh`, `ci/run.sh`, `ci/stack.sh`).
