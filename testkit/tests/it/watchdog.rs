//! The kit's per-test time limit (`rtmc_testkit::watchdog`), seen from
//! outside: this binary run again on one test that hangs.

use std::process::Command;
use std::time::{Duration, Instant};

/// Env var that makes [`helper_hangs_when_asked`] hang.
const HANG: &str = "RTMC_WATCHDOG_TEST_HANG";

/// A helper, not a check of its own: hangs under the watchdog when
/// [`a_hanging_test_ends_the_binary_naming_it`] runs it with `HANG` set;
/// otherwise it checks that being watched costs a test nothing.
#[test]
fn helper_hangs_when_asked() {
    rtmc_testkit::init_test_logs();
    if std::env::var_os(HANG).is_some() {
        std::thread::sleep(Duration::from_secs(600));
    }
    // A second call on the same test is harmless.
    rtmc_testkit::init_test_logs();
}

#[test]
fn a_hanging_test_ends_the_binary_naming_it() {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog::helper_hangs_when_asked",
            "--test-threads",
            "2",
        ])
        .env(HANG, "1")
        .env("RTMC_TEST_TIMEOUT_S", "2")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "stderr: {stderr}");
    assert!(
        stderr.contains("test `watchdog::helper_hangs_when_asked` has run for")
            && stderr.contains("over the limit of 2 s (RTMC_TEST_TIMEOUT_S)"),
        "stderr: {stderr}"
    );
    assert!(took < Duration::from_secs(60), "the watchdog took {took:?}");
}

#[test]
fn a_bad_limit_is_refused_with_the_reason() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "watchdog::helper_hangs_when_asked"])
        .env("RTMC_TEST_TIMEOUT_S", "soon")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("RTMC_TEST_TIMEOUT_S=\"soon\": expected a positive number of seconds"),
        "stdout: {stdout}"
    );
}
