//! The pin check on throwaway git repositories, one per rule: the pin must
//! be an ancestor of HEAD, a strict ancestor of the commit that set it, and
//! on the landed main; a pin still uncommitted is judged against HEAD.

use std::path::Path;
use std::process::Command;

use rtmc_ci::pin::{check_pin, PinError, PinnedBy};

const CONFIG: &str = "ci/baseline.toml";

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Writes `file` with `text` and commits it; returns the new HEAD.
fn commit(dir: &Path, file: &str, text: &str, subject: &str) -> String {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", subject]);
    git(dir, &["rev-parse", "HEAD"])
}

fn pin_file(sha: &str) -> String {
    format!("# the baseline\ncommit = \"{sha}\"\npairs = 3\n")
}

/// A repository on `main` with one landed commit of measured code.
fn repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    let landed = commit(dir.path(), "system/lib.rs", "// v1\n", "landed code");
    (dir, landed)
}

fn check(dir: &Path, sha: &str) -> Result<rtmc_ci::pin::PinCheck, PinError> {
    check_pin(dir, CONFIG, sha, sha, Some("main"))
}

#[test]
fn a_landed_pin_set_in_its_own_commit_before_the_change_passes_and_is_named() {
    let (dir, landed) = repo();
    let pinning = commit(
        dir.path(),
        CONFIG,
        &pin_file(&landed),
        "pin the landed main",
    );
    git(dir.path(), &["checkout", "-q", "-b", "work"]);
    commit(
        dir.path(),
        "system/lib.rs",
        "// v2\n",
        "the submission's change",
    );
    let c = check(dir.path(), &landed).unwrap();
    assert_eq!(c.baseline.sha, landed);
    assert_eq!(c.baseline.subject, "landed code");
    assert!(!c.baseline.date.is_empty());
    match c.pinned_by {
        PinnedBy::Commit(p) => assert_eq!(p.sha, pinning),
        other => panic!("{other:?}"),
    }
    assert!(c.baseline.to_string().contains("landed code"));
}

#[test]
fn a_pin_that_is_not_an_ancestor_of_head_is_refused() {
    let (dir, landed) = repo();
    git(dir.path(), &["checkout", "-q", "-b", "elsewhere"]);
    let other = commit(dir.path(), "system/lib.rs", "// other\n", "another line");
    git(dir.path(), &["checkout", "-q", "main"]);
    commit(dir.path(), CONFIG, &pin_file(&other), "pin a stranger");
    let err = check(dir.path(), &other).unwrap_err();
    assert!(matches!(err, PinError::NotAncestorOfHead { .. }), "{err}");
    assert!(err.to_string().contains("not an ancestor of HEAD"), "{err}");
    let _ = landed;
}

#[test]
fn a_pin_of_code_that_came_after_the_pinning_commit_is_refused() {
    let (dir, _landed) = repo();
    git(dir.path(), &["checkout", "-q", "-b", "side"]);
    let later = commit(dir.path(), "system/lib.rs", "// side\n", "side change");
    git(dir.path(), &["checkout", "-q", "main"]);
    // The pin names `later`, which the pinning commit does not contain; the
    // merge afterwards makes it an ancestor of HEAD.
    commit(
        dir.path(),
        CONFIG,
        &pin_file(&later),
        "pin a commit not yet merged",
    );
    git(dir.path(), &["merge", "-q", "--no-edit", "side"]);
    let err = check(dir.path(), &later).unwrap_err();
    assert!(matches!(err, PinError::NotBeforePinning { .. }), "{err}");
    assert!(err.to_string().contains("strict ancestor"), "{err}");
}

#[test]
fn a_submission_that_pins_its_own_commit_is_refused() {
    let (dir, _landed) = repo();
    git(dir.path(), &["checkout", "-q", "-b", "work"]);
    let own = commit(
        dir.path(),
        "system/lib.rs",
        "// v2\n",
        "the submission's change",
    );
    commit(dir.path(), CONFIG, &pin_file(&own), "pin my own change");
    let err = check(dir.path(), &own).unwrap_err();
    assert!(matches!(err, PinError::NotLanded { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("compare the submission with itself"),
        "{err}"
    );
    // Without a known upstream main only the ancestry rules apply.
    check_pin(dir.path(), CONFIG, &own, &own, None).unwrap();
}

#[test]
fn an_uncommitted_pin_is_judged_against_head() {
    let (dir, landed) = repo();
    commit(dir.path(), CONFIG, &pin_file("0000"), "an old pin");
    std::fs::write(dir.path().join(CONFIG), pin_file(&landed)).unwrap();
    let c = check(dir.path(), &landed).unwrap();
    assert_eq!(c.pinned_by, PinnedBy::WorkTree);
    assert_eq!(c.landed_ref.as_deref(), Some("main"));
}
