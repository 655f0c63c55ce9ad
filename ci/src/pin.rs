//! The pin check: the baseline a gate compares with must be landed code that
//! existed before the submission began, never the submission's own. A pin
//! that names a commit of the submission makes the gate compare a change
//! with itself, so every regression passes unseen.
//!
//! Three rules, each checkable from git history alone (ci/README.md, "The
//! pin"): the pinned commit is an ancestor of HEAD; it is a *strict* ancestor
//! of the commit that wrote it into `ci/baseline.toml` (found with `git log
//! -S<sha> -- ci/baseline.toml`), so a change cannot pin itself; and, when an
//! upstream main is known (`origin/main`, else `main`), it is on that main.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The branches tried, in order, as the upstream main a pin must be on.
pub const LANDED_REFS: &[&str] = &["origin/main", "main"];

/// One commit as a person reads it in the gate's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub sha: String,
    /// Committer date, ISO 8601.
    pub date: String,
    pub subject: String,
}

impl std::fmt::Display for CommitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.sha.get(..12).unwrap_or(&self.sha);
        write!(f, "{short} ({}) {}", self.date, self.subject)
    }
}

/// Which change wrote the pin into the baseline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinnedBy {
    /// A commit (the newest one whose file holds the pin).
    Commit(CommitInfo),
    /// The work tree: the file's pin is not committed yet (or the file is
    /// untracked); HEAD is then the parent of the pinning change.
    WorkTree,
}

/// What the check found when the pin is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinCheck {
    /// The landed commit the gate measures against.
    pub baseline: CommitInfo,
    pub pinned_by: PinnedBy,
    /// The upstream main the pin was found on, if one is known here.
    pub landed_ref: Option<String>,
}

/// Why a pin is refused (the gate exits 2).
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("`{command}` failed: {message}")]
    Git { command: String, message: String },
    #[error("the baseline pin {pin} is not an ancestor of HEAD ({head}): the gate would compare with code this tree does not contain. Pin the main that was landed when the work began (ci/README.md, \"The pin\")")]
    NotAncestorOfHead { pin: String, head: String },
    #[error("the baseline pin {pin} is not a strict ancestor of the commit that set it, {pinned_by}: a change may pin only code that existed before it, never itself. Pin the landed main in its own commit, before any change to measured code (ci/README.md, \"The pin\")")]
    NotBeforePinning { pin: String, pinned_by: CommitInfo },
    #[error("the baseline pin {pin} is not on the landed main ({landed_ref}): it names a commit of the submission, so the gate would compare the submission with itself. Pin the landed main (ci/README.md, \"The pin\")")]
    NotLanded { pin: String, landed_ref: String },
}

fn git(repo: &Path, args: &[&str]) -> Result<std::process::Output, PinError> {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| PinError::Git {
            command: format!("git {}", args.join(" ")),
            message: e.to_string(),
        })
}

fn git_text(repo: &Path, args: &[&str]) -> Result<String, PinError> {
    let out = git(repo, args)?;
    if !out.status.success() {
        return Err(PinError::Git {
            command: format!("git {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `ancestor` is an ancestor of `of` (a commit is its own ancestor).
pub fn is_ancestor(repo: &Path, ancestor: &str, of: &str) -> Result<bool, PinError> {
    let out = git(repo, &["merge-base", "--is-ancestor", ancestor, of])?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(PinError::Git {
            command: format!("git merge-base --is-ancestor {ancestor} {of}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
    }
}

/// The sha, committer date and subject of `rev`.
pub fn commit_info(repo: &Path, rev: &str) -> Result<CommitInfo, PinError> {
    let text = git_text(repo, &["log", "-1", "--format=%H%x00%cI%x00%s", rev, "--"])?;
    let mut parts = text.splitn(3, '\0');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    Ok(CommitInfo {
        sha: next(),
        date: next(),
        subject: next(),
    })
}

/// The first of [`LANDED_REFS`] that names a commit in `repo`.
pub fn landed_ref(repo: &Path) -> Option<String> {
    LANDED_REFS.iter().find_map(|r| {
        git_text(
            repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{r}^{{commit}}"),
            ],
        )
        .ok()
        .filter(|s| !s.is_empty())
        .map(|_| (*r).to_owned())
    })
}

/// The change that wrote `literal` (the pin as the file spells it) into
/// `config` (a path relative to the repository root).
pub fn pinned_by(repo: &Path, config: &str, literal: &str) -> Result<PinnedBy, PinError> {
    let tracked = git(repo, &["ls-files", "--error-unmatch", "--", config])?
        .status
        .success();
    let changed = !git(repo, &["diff", "--quiet", "HEAD", "--", config])?
        .status
        .success();
    if !tracked || changed {
        return Ok(PinnedBy::WorkTree);
    }
    let search = format!("-S{literal}");
    let commits = git_text(repo, &["log", "--format=%H", &search, "--", config])?;
    for sha in commits.lines() {
        let file = git(repo, &["show", &format!("{sha}:{config}")])?;
        if file.status.success() && String::from_utf8_lossy(&file.stdout).contains(literal) {
            return Ok(PinnedBy::Commit(commit_info(repo, sha)?));
        }
    }
    // Tracked, unchanged, holding the pin, yet no commit added it: history
    // was cut (a shallow clone). Treat HEAD as the pinning change's parent.
    Ok(PinnedBy::WorkTree)
}

/// Checks the pin `sha` (resolved; `literal` is how `config` spells it)
/// against HEAD of `repo`, the change that set it, and the landed main
/// (`landed`, when one is known).
pub fn check_pin(
    repo: &Path,
    config: &str,
    literal: &str,
    sha: &str,
    landed: Option<&str>,
) -> Result<PinCheck, PinError> {
    let baseline = commit_info(repo, sha)?;
    if !is_ancestor(repo, sha, "HEAD")? {
        return Err(PinError::NotAncestorOfHead {
            pin: baseline.to_string(),
            head: commit_info(repo, "HEAD")?.to_string(),
        });
    }
    let by = pinned_by(repo, config, literal)?;
    if let PinnedBy::Commit(p) = &by {
        if p.sha == baseline.sha || !is_ancestor(repo, sha, &p.sha)? {
            return Err(PinError::NotBeforePinning {
                pin: baseline.to_string(),
                pinned_by: p.clone(),
            });
        }
    }
    if let Some(landed) = landed {
        if !is_ancestor(repo, sha, landed)? {
            return Err(PinError::NotLanded {
                pin: baseline.to_string(),
                landed_ref: landed.to_owned(),
            });
        }
    }
    Ok(PinCheck {
        baseline,
        pinned_by: by,
        landed_ref: landed.map(str::to_owned),
    })
}

/// `config` relative to the repository root of `repo`, as git names it;
/// `None` when the file lies outside the repository.
pub fn path_in_repo(repo: &Path, config: &Path) -> Option<String> {
    let top = git_text(repo, &["rev-parse", "--show-toplevel"]).ok()?;
    let top = std::fs::canonicalize(top).ok()?;
    let file = std::fs::canonicalize(config).ok()?;
    file.strip_prefix(&top)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}
