//! What the gate tells people: the table on stdout, the pull-request report
//! (`gate-report.md`), the machine-readable `gate.json`, and `rounds.svg`
//! (every round's value per metric, A and B, with the floor as the control);
//! for `--aa`, the spread table, `aa-report.md`, `aa.json` and the suggested
//! thresholds as a `baseline.toml` fragment.
//!
//! Wording is deliberately modest: a pass says "no regression detected at
//! ±X%", never "no regression".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rtmc_loadgen::report::plots::PlotResult;
use serde::{Deserialize, Serialize};

use crate::compare::{AaSpread, BootstrapConfig, MetricComparison, RatioEstimate};
use crate::instructions::{BenchComparison, InstructionReport};
use crate::metric::Metric;
pub use crate::round::RoundSummary;
use crate::round::Side;
use crate::spectra;
use crate::verdict::{GateVerdict, MetricJudgement, MetricVerdict};

use crate::round::lookup;

/// Where the numbers came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateSetup {
    /// `run`, `aa` or `compare`.
    pub mode: String,
    pub generated_at: String,
    pub baseline_commit: Option<String>,
    pub candidate_commit: Option<String>,
    pub baseline_rtmc: Option<PathBuf>,
    pub candidate_rtmc: Option<PathBuf>,
    pub loadgen: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    pub inject_delay_us: Option<u64>,
    pub thresholds_measured_by: String,
    /// The landed commit measured against, as a person reads it (sha, date,
    /// subject), with which change pinned it (the pin check).
    #[serde(default)]
    pub baseline_landed: Option<String>,
    /// `RTMC_TEST_FANOUT_CPU_PCT` given to the candidate side, if any.
    #[serde(default)]
    pub inject_cpu_pct: Option<u64>,
}

/// `gate.json`: everything one judgement used and concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub setup: GateSetup,
    pub bootstrap: BootstrapConfig,
    pub agreement_frac: f64,
    pub rounds: Vec<RoundSummary>,
    pub comparisons: Vec<MetricComparison>,
    pub judgements: Vec<MetricJudgement>,
    pub baseline_failures: Vec<String>,
    pub candidate_failures: Vec<String>,
    /// The instruction-count check; absent when it was skipped
    /// (`--no-instructions`, `--compare`, A/A).
    #[serde(default)]
    pub instructions: Option<InstructionReport>,
    /// Why the gate could not judge, besides failed rounds (too few rounds).
    #[serde(default)]
    pub notes: Vec<String>,
    pub verdict: GateVerdict,
}

mod aa;
mod files;
mod markdown;
mod plots;
mod table;

pub use aa::*;
pub use files::*;
pub use markdown::*;
pub use plots::*;
pub use table::*;
