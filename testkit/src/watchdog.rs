//! A time limit per stack test. libtest has none: a test that hangs (a
//! service that never answers, a lost wake-up) keeps `cargo test` running
//! until CI's own limit kills it, with no word on which test or why. Every
//! test that starts a stack goes through [`init_test_logs`], which
//! calls [`guard_this_test`]: past `RTMC_TEST_TIMEOUT_S` seconds (default
//! [`DEFAULT_LIMIT_S`]) the test binary prints the test's name and the
//! kit's containers, removes them, and exits with status 101 (a failed run).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::docker;

/// The limit when `RTMC_TEST_TIMEOUT_S` is unset: the longest stack test in
/// CI takes about 3 minutes on the 2-core machine, the full chaos set's
/// about 5.
pub const DEFAULT_LIMIT_S: u64 = 900;

/// Tests being watched, by a key unique to each guard.
static WATCHED: Mutex<Option<HashMap<u64, Watched>>> = Mutex::new(None);

struct Watched {
    test: String,
    since: Instant,
}

thread_local! {
    /// Present while this thread's test is watched; dropped (and the test
    /// forgotten) when libtest's thread for the test ends.
    static GUARD: std::cell::RefCell<Option<Guard>> = const { std::cell::RefCell::new(None) };
}

struct Guard(u64);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(map) = WATCHED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            map.remove(&self.0);
        }
    }
}

/// The limit in force: `RTMC_TEST_TIMEOUT_S`, or [`DEFAULT_LIMIT_S`].
///
/// # Panics
/// When `RTMC_TEST_TIMEOUT_S` is set but not a positive whole number.
pub fn limit() -> Duration {
    match std::env::var("RTMC_TEST_TIMEOUT_S") {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s),
            _ => panic!("RTMC_TEST_TIMEOUT_S={v:?}: expected a positive number of seconds"),
        },
        Err(_) => Duration::from_secs(DEFAULT_LIMIT_S),
    }
}

/// Watches the test running on this thread (libtest names the thread after
/// the test). Does nothing on a thread that is not a test's (the main
/// thread, a runtime's worker) or when this test is watched already.
pub fn guard_this_test() {
    let Some(test) = std::thread::current().name().map(str::to_owned) else {
        return;
    };
    if test == "main" || test.starts_with("tokio-") {
        return;
    }
    let limit = limit();
    GUARD.with(|g| {
        let mut g = g.borrow_mut();
        if g.is_some() {
            return;
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let key = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WATCHED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(
                key,
                Watched {
                    test,
                    since: Instant::now(),
                },
            );
        *g = Some(Guard(key));
    });
    static MONITOR: Once = Once::new();
    MONITOR.call_once(|| {
        std::thread::Builder::new()
            .name("rtmc-test-watchdog".into())
            .spawn(move || monitor(limit))
            .expect("spawn the test watchdog");
    });
}

/// The tests over `limit`, oldest first, with how long each has run.
fn overdue(limit: Duration) -> Vec<(String, Duration)> {
    let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    let mut late: Vec<_> = watched
        .iter()
        .flat_map(|m| m.values())
        .map(|w| (w.test.clone(), w.since.elapsed()))
        .filter(|(_, ran)| *ran > limit)
        .collect();
    late.sort_by_key(|(_, ran)| std::cmp::Reverse(*ran));
    late
}

fn monitor(limit: Duration) -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let late = overdue(limit);
        if late.is_empty() {
            continue;
        }
        // Straight to the file descriptor: libtest captures `eprintln!`.
        let mut err = std::io::stderr().lock();
        for (test, ran) in &late {
            let _ = writeln!(
                err,
                "rtmc testkit: test `{test}` has run for {} s, over the limit of {} s \
                 (RTMC_TEST_TIMEOUT_S): it hangs. Ending this test binary so the run fails \
                 now instead of at CI's time limit.",
                ran.as_secs(),
                limit.as_secs()
            );
        }
        let _ = writeln!(
            err,
            "rtmc testkit: this process's containers:\n{}",
            docker::own_containers()
        );
        docker::remove_own_containers();
        let _ = err.flush();
        std::process::exit(101);
    }
}

/// Logs for tests: captured per test by the harness (shown for failures),
/// `RUST_LOG` filters (default warn). The test entry points
/// ([`crate::Pipeline::shared`], [`crate::Pipeline::private`]) call it, so suites do not;
/// a second call does nothing. [`crate::Pipeline::start`] does not: tools that
/// embed a stack install their own subscriber (or none).
///
/// It also puts the calling test under the kit's time limit
/// (this module): a test that hangs ends the binary with its name.
pub fn init_test_logs() {
    guard_this_test();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_is_watched_while_it_runs_and_forgotten_after() {
        let name = "watchdog::probe_test";
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(|| {
                GUARD.with(|g| assert!(g.borrow().is_none()));
                // Not through guard_this_test: no monitor thread in a unit test.
                let key = u64::MAX;
                WATCHED
                    .lock()
                    .unwrap()
                    .get_or_insert_with(HashMap::new)
                    .insert(
                        key,
                        Watched {
                            test: name.into(),
                            since: Instant::now() - Duration::from_secs(5),
                        },
                    );
                GUARD.with(|g| *g.borrow_mut() = Some(Guard(key)));
                overdue(Duration::from_secs(1))
            })
            .unwrap();
        let late = handle.join().unwrap();
        assert!(
            late.iter()
                .any(|(t, ran)| t == name && *ran >= Duration::from_secs(5)),
            "{late:?}"
        );
        assert!(
            !overdue(Duration::ZERO).iter().any(|(t, _)| t == name),
            "the test was not forgotten when its thread ended"
        );
    }
}
