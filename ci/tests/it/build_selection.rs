//! The gate's test-only builds share the release build's dependencies only
//! if a test-only feature of `rtmc-system` enables no dependency feature:
//! `cargo tree -e features` of the workspace, rtmc's own crates left out,
//! must read the same with and without each feature.

use std::path::Path;
use std::process::Command;

use rtmc_ci::gate::{CPU_FEATURE, DELAY_FEATURE};

/// The dependency features of the workspace build with `features`.
fn dependency_features(features: Option<&str>) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(&root).args([
        "tree",
        "--locked",
        "--offline",
        "--workspace",
        "-e",
        "features",
        "--target",
        "all",
        "--prefix",
        "none",
    ]);
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("rtmc-"))
        .map(|l| l.trim_end_matches(" (*)").to_owned())
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

#[test]
fn test_only_features_enable_no_dependency_feature() {
    let release = dependency_features(None);
    assert!(release.len() > 100, "{} lines", release.len());
    for feature in [DELAY_FEATURE, CPU_FEATURE] {
        assert_eq!(
            dependency_features(Some(feature)),
            release,
            "{feature} changes the dependencies' features"
        );
    }
}
