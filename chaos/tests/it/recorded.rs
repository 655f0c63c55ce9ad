//! The stack suites' load: `chaos run`'s driver,
//! [`RecordedLoad`] (loadgen's clients and publishers recorded into a
//! `History`), connected with the choices a suite needs (readers placed,
//! a run id chosen in advance, a TCP publisher beside the gateway,
//! publishing until the suite's fault script ends), and the helpers that
//! judge and time the recorded history.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtmc_chaos::history::{ClientHistory, Outcome, SessionEventKind};
use rtmc_chaos::scenario::load::{LoadChoices, RecordedLoad};
use rtmc_chaos::scenario::{Load, PublishPath};
use rtmc_chaos::{ChaosStack, History, Recording, Verdict};
use tokio_util::sync::CancellationToken;

/// The longest a suite's load may publish: its fault script stops it long
/// before.
const LONGEST: Duration = Duration::from_secs(300);
/// The publisher channel of the gateway (the load's publish path).
pub const HTTP_PUBLISHER: &str = "publisher-0";
/// The publisher channel of the TCP session beside it.
pub const TCP_PUBLISHER: &str = "publisher-1";

/// A light load for [`RecordedLoad`]: `clients` on server node 0,
/// `rate_per_sec` publishes over the gateway for `duration`.
pub fn light_load(clients: usize, rate_per_sec: u32, duration: Duration) -> Load {
    Load {
        clients,
        rate_per_sec: f64::from(rate_per_sec),
        duration,
        publish: PublishPath::Http,
        servers: 1,
        body_bytes: 100,
    }
}

/// A recorded load of `clients` readers publishing `rate_per_sec` over the
/// gateway until [`drive`]'s script ends, with `choices` (its `stop` is
/// set here).
pub async fn until_stopped(
    stack: &ChaosStack,
    name: &str,
    clients: usize,
    rate_per_sec: u32,
    choices: LoadChoices,
) -> Stopped {
    let stop = CancellationToken::new();
    let choices = LoadChoices {
        stop: Some(stop.clone()),
        ..choices
    };
    let load = light_load(clients, rate_per_sec, LONGEST);
    let driver = RecordedLoad::connect_with(stack, name, &load, true, choices)
        .await
        .expect("every client logs in");
    Stopped { driver, stop }
}

/// A connected load that publishes until its script ends.
pub struct Stopped {
    pub driver: RecordedLoad,
    stop: CancellationToken,
}

impl Stopped {
    /// The recording's clock (fault times for the history's timeline).
    pub fn recording(&self) -> Recording {
        self.driver.recording().clone()
    }

    /// Publishes while `script` runs (faults, waits), stops when it ends,
    /// drains and returns the recorded history with the script's output.
    pub async fn drive<T>(
        self,
        stack: &ChaosStack,
        script: impl Future<Output = T>,
    ) -> (History, T) {
        let Stopped { mut driver, stop } = self;
        let script = async {
            let out = script.await;
            stop.cancel();
            out
        };
        let (phase, out) = tokio::join!(driver.publish(Instant::now()), script);
        let history = driver
            .finish(stack, phase.report.head_after)
            .await
            .expect("every log handed back");
        (history, out)
    }
}

/// `n` copies of `addr`: `n` readers logging in there.
pub fn at(addr: &str, n: usize) -> Vec<SocketAddr> {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    vec![addr; n]
}

/// `at` (a past instant) on the recording's clock.
pub fn us_at(recording: &Recording, at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at).as_micros() as u64;
    recording.now_us().saturating_sub(ago)
}

/// One recorded publish, as a suite asserts on it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `publisher-0` (the gateway) or `publisher-1` (TCP beside it).
    pub publisher: String,
    pub id: String,
    /// `None`: never answered.
    pub took: Option<Duration>,
    /// `ok`, the refusal's code, or `unknown`.
    pub outcome: String,
}

/// The publishes invoked within `[from_us, to_us)` on the recording's clock.
pub fn invoked_between(history: &History, from_us: u64, to_us: u64) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    for p in history.publishers() {
        for a in &p.publishes {
            if a.invoked_at_us < from_us || a.invoked_at_us >= to_us {
                continue;
            }
            let outcome = match a.outcome {
                Outcome::Ok => "ok".to_owned(),
                Outcome::Fail { code } => history.code(code).to_owned(),
                Outcome::Unknown => "unknown".to_owned(),
            };
            attempts.push(Attempt {
                publisher: p.name.clone(),
                id: history.message_id(a.message).to_owned(),
                took: a
                    .completed_at_us
                    .map(|c| Duration::from_micros(c.saturating_sub(a.invoked_at_us))),
                outcome,
            });
        }
    }
    attempts
}

/// Whether `id` was acknowledged.
pub fn acked(history: &History, id: &str) -> bool {
    invoked_between(history, 0, u64::MAX)
        .iter()
        .any(|a| a.id == id && a.outcome == "ok")
}

/// From `at_us` to the first acknowledgement answered at or after it.
pub fn first_ack_after(history: &History, at_us: u64) -> Option<Duration> {
    let (first_ack, _) = rtmc_chaos::scenario::report::recovery(history, at_us);
    first_ack.map(Duration::from_secs_f64)
}

/// From `at_us` until the last client got its first delivery after it.
pub fn resumed_after(history: &History, at_us: u64) -> Option<Duration> {
    let at_ms = at_us / 1000;
    history
        .clients()
        .iter()
        .map(|c| {
            c.deliveries
                .iter()
                .map(|d| u64::from(d.received_at_ms))
                .find(|&ms| ms >= at_ms)
                .map(|ms| Duration::from_millis(ms - at_ms))
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// Asserts the history checker's verdict on a recorded load: valid, with
/// every one of its `clients` checked. Returns the verdict.
pub fn assert_valid(history: &History, clients: usize) -> Verdict {
    let verdict = history.check();
    println!("{verdict}");
    assert!(
        verdict.valid,
        "the history checker failed the run:\n{verdict}"
    );
    assert_eq!(
        verdict.totals.clients, clients as u64,
        "every client checked"
    );
    verdict
}

/// How many times `client` logged in (1: it never reconnected).
pub fn logins(client: &ClientHistory) -> usize {
    client
        .events
        .iter()
        .filter(|e| matches!(e.kind, SessionEventKind::Connected { .. }))
        .count()
}

/// Prints the two recovery times of a recorded load, measured from
/// `repaired_at_us` on its recording's clock.
pub fn report_recovery(suite: &str, history: &History, repaired_at_us: u64) {
    let (first_ack, caught_up) = rtmc_chaos::scenario::report::recovery(history, repaired_at_us);
    let shown = |secs: Option<f64>| secs.map_or("never".to_owned(), |s| format!("{s:.2} s"));
    println!(
        "[{suite}] first acknowledged publish after the fault ended: {}",
        shown(first_ack)
    );
    println!(
        "[{suite}] last client caught up after the fault ended: {}",
        shown(caught_up)
    );
}

/// Prints a timed line of a suite (shown with `--nocapture` and for
/// failures).
pub fn report_time(suite: &str, what: &str, took: Option<Duration>) {
    match took {
        Some(d) => println!("[{suite}] {what}: {:.2} s", d.as_secs_f64()),
        None => println!("[{suite}] {what}: never"),
    }
}
