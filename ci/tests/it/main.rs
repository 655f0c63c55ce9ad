//! The gate's integration tests (one binary): the statistics on synthetic
//! rounds, loadgen's real report format, `--compare` on saved rounds, and
//! the whole run path with fake `loadgen`, `rtmc` and `cargo` scripts.

mod build_selection;
mod compare_dirs;
mod fixtures;
mod layers;
mod loadgen_report;
mod pin;
mod run_path;
mod statistics;
mod synthetic;
