//! rtmc-ci: the latency regression gate (`gate`). It runs the pinned
//! baseline's `rtmc` and the candidate's in interleaved loadgen rounds on the
//! same machine, with the Redis pub/sub floor of every round as the control,
//! and fails the build only on a regression that is beyond a threshold set
//! from measured A/A noise, significant by a bootstrap interval, agreed on
//! by the rounds and not explained by the machine (design.md §9).
//!
//! The map: [`baseline`] (the pinned commit, settings, its binary) → [`ab`]
//! (the interleaved rounds) → [`round`] (one round's report) → [`compare`]
//! (ratios, bootstrap intervals, A/A spread) → [`verdict`] (the decision) →
//! [`report`] (table, markdown, JSON, plots; [`spectra`] pools each side's
//! histograms for the overlaid charts); [`gate`] strings them together.
//! [`instructions`] is the second check: callgrind instruction counts of the
//! CPU-bound benches, baseline against candidate, at a fixed threshold.
//! [`lock`] keeps a second gate off a target directory one is using;
//! [`stored`] is the committed summary of the pinned baseline's rounds;
//! [`pin`] checks that the pin names landed code older than the change that
//! set it; [`trend`] measures the landed history (`gate trend`).
//! The machine setup and test scripts live beside this crate (`ci/setup.sh`,
//! `ci/test.sh`, `ci/run.sh`, `ci/stack.sh`).

pub mod ab;
pub mod baseline;
pub mod compare;
pub mod gate;
pub mod instructions;
pub mod lock;
pub mod metric;
pub mod pin;
pub mod report;
pub mod round;
pub mod spectra;
pub mod stored;
pub mod trend;
pub mod verdict;
