//! `ci/gate/baseline/baseline.json`: the summary `gate --update-baseline`
//! stores beside the pinned commit's round directories (`round-NN/`), for
//! reports and trends (the gate's decision never reads it). It is
//! committed, so it names nothing of the machine that wrote it: each
//! round's directory is relative to the baseline directory, and so is the
//! profile when it lies inside the repository. Files written before that
//! carry absolute directories; [`StoredBaseline::read`] accepts both.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::baseline::BaselineError;
use crate::report::RoundSummary;
use crate::round::Round;

/// The summary's file name in the baseline directory.
pub const SUMMARY_FILE: &str = "baseline.json";

/// What the gate says of the stored files.
pub const NOTE: &str = "Histograms of the pinned baseline, for reports and trends. The gate never decides on them: every run measures the baseline again, interleaved with the candidate.";

/// The directory (relative to the baseline directory) that keeps round
/// `pair`'s (0-based) `report.json` and histograms: `round-01`, …
pub fn round_dir_name(pair: usize) -> String {
    format!("round-{:02}", pair + 1)
}

/// `baseline.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBaseline {
    /// The pinned commit the rounds ran.
    pub commit: String,
    pub stored_at: String,
    /// The loadgen profile of the rounds, relative to the repository root
    /// when it lies inside it.
    pub profile: PathBuf,
    /// Each round's values. Its `dir` is relative to the baseline directory
    /// (`round-01`) as written; [`Self::read`] resolves it.
    pub rounds: Vec<RoundSummary>,
    #[serde(default)]
    pub note: String,
}

impl StoredBaseline {
    /// The summary of `rounds` of `commit`, stored in `round_dir_name`
    /// directories; `profile` is made relative to `repo` when inside it.
    pub fn of(
        commit: &str,
        stored_at: String,
        repo: &Path,
        profile: &Path,
        rounds: &[Round],
    ) -> Self {
        let profile = profile
            .strip_prefix(repo)
            .map(Path::to_owned)
            .unwrap_or_else(|_| profile.to_owned());
        Self {
            commit: commit.into(),
            stored_at,
            profile,
            rounds: rounds
                .iter()
                .map(|r| RoundSummary {
                    dir: PathBuf::from(round_dir_name(r.pair)),
                    ..RoundSummary::of(r)
                })
                .collect(),
            note: NOTE.into(),
        }
    }

    /// Reads `dir/baseline.json`; each round's `dir` comes back as a path
    /// under `dir` (an absolute one, as files written before 2026-11-26
    /// 11:00 carry, is kept as it is).
    pub fn read(dir: &Path) -> Result<Self, BaselineError> {
        let path = dir.join(SUMMARY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| BaselineError::Read {
            path: path.clone(),
            source,
        })?;
        let mut stored: Self = serde_json::from_str(&text).map_err(|e| BaselineError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for r in &mut stored.rounds {
            if r.dir.is_relative() {
                r.dir = dir.join(&r.dir);
            }
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::{load_round, Side};

    fn fixture_round(root: &Path, pair: usize) -> Round {
        let dir = root.join(format!("measured/pair-{pair}"));
        std::fs::create_dir_all(&dir).unwrap();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smoke-report.json");
        std::fs::copy(fixture, dir.join("report.json")).unwrap();
        load_round(&dir, Side::Baseline, pair, pair).unwrap()
    }

    #[test]
    fn the_summary_names_no_machine_path_and_reads_back_under_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let rounds = [fixture_round(tmp.path(), 0), fixture_round(tmp.path(), 1)];
        let profile = repo.join("ci/gate/short.toml");
        let s = StoredBaseline::of("abc", "now".into(), &repo, &profile, &rounds);
        let text = serde_json::to_string_pretty(&s).unwrap();
        let machine = tmp.path().to_string_lossy().into_owned();
        assert!(
            !text.contains(&machine),
            "a machine path is stored:\n{text}"
        );
        assert_eq!(s.profile, Path::new("ci/gate/short.toml"));
        assert_eq!(s.rounds[1].dir, Path::new("round-02"));
        let stored = tmp.path().join("baseline");
        std::fs::create_dir_all(&stored).unwrap();
        std::fs::write(stored.join(SUMMARY_FILE), &text).unwrap();
        let back = StoredBaseline::read(&stored).unwrap();
        assert_eq!(back.rounds[0].dir, stored.join("round-01"));
        assert_eq!(back.rounds[0].rtmc, s.rounds[0].rtmc);
        assert_eq!(back.commit, "abc");
    }

    #[test]
    fn an_older_summary_with_absolute_directories_still_reads() {
        let tmp = tempfile::tempdir().unwrap();
        let rounds = [fixture_round(tmp.path(), 0)];
        let mut old = StoredBaseline::of(
            "abc",
            "then".into(),
            tmp.path(),
            Path::new("ci/gate/short.toml"),
            &rounds,
        );
        let absolute = PathBuf::from("/work/main/target/gate/reports/x/rounds/baseline/pair-01");
        old.rounds[0].dir = absolute.clone();
        std::fs::write(
            tmp.path().join(SUMMARY_FILE),
            serde_json::to_string(&old).unwrap(),
        )
        .unwrap();
        let back = StoredBaseline::read(tmp.path()).unwrap();
        assert_eq!(back.rounds[0].dir, absolute);
        // The committed summary reads too, whichever form it has.
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("gate/baseline");
        let shipped = StoredBaseline::read(&committed).unwrap();
        assert!(!shipped.rounds.is_empty());
        assert!(matches!(
            StoredBaseline::read(&tmp.path().join("missing")),
            Err(BaselineError::Read { .. })
        ));
    }
}
