//! The stack suites' load, in two kinds. Most suites drive theirs with
//! `chaos run`'s driver, [`RecordedLoad`](rtmc_chaos::scenario::load::RecordedLoad)
//! (loadgen's clients and publishers recorded into a `History`), and judge
//! it with the helpers at the end of this file ([`light_load`],
//! [`assert_valid`], [`logins`], [`report_recovery`]).
//!
//! [`Workload`] remains for what loadgen's engine does not record or let a
//! suite choose:
//! - the error code in a refused HTTP publish's body: the engine records
//!   `http_503`, the broker suites assert `broker_unavailable`;
//! - message ids chosen in advance: `checker_e2e` makes the consumer drop
//!   `drop-h-15`, the engine names messages after its run id;
//! - which reader logs in where: the node and half-dropped suites put some
//!   readers behind a proxy or on a doomed node and others elsewhere, the
//!   engine spreads its clients over the stack's nodes itself;
//! - publishing until the suite stops it: outages end when the service is
//!   back (a restarted RabbitMQ takes 3–10 s), not at a time known when
//!   the load starts, as the engine's phases need.
//!
//! Its publishing is open-loop over the gateway (each publish its own
//! task, so a hung one never delays the next) plus an optional closed-loop
//! TCP publisher; every attempt is recorded with its outcome and times.
//! Each reader client records what it received and when, and its
//! reconnects (each a login resuming from its last seq). Everything also
//! goes into an `rtmc_chaos::Recording`; [`Run::check`] adds PostgreSQL's
//! rows once the run drained and asserts the history checker's verdict
//! (design §8: nothing acknowledged lost, nothing unexpected, no gap, no
//! order violation, PostgreSQL clean), and [`Run`] measures recovery times
//! from the timed records.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtmc::client::{ChatClient, ClientError};
use rtmc_chaos::history::{ClientHistory, OpId, SessionEventKind};
use rtmc_chaos::scenario::{Load, PublishPath};
use rtmc_chaos::{ChaosStack, ClientLog, History, PublishLog, Recording, Verdict};
use rtmc_testkit::{HttpPublisher, Pipeline, TEST_PASSWORD};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// The longest a publish may stay unanswered before it counts as unknown.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(30);
/// How often readers heartbeat (the server's timeout is 30 s).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `202` or `send_ack`: the system owes every reader this message.
    Acked,
    /// Refused with this HTTP status (0 over TCP) and code.
    Refused { status: u16, code: String },
    /// No answer (timeout, connection lost).
    Unknown(String),
}

/// How a message was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Http,
    Tcp,
}

/// One publish attempt.
#[derive(Debug, Clone)]
pub struct Publish {
    pub id: String,
    pub via: Via,
    pub invoked_at: Instant,
    pub done_at: Instant,
    pub outcome: Outcome,
}

impl Publish {
    pub fn took(&self) -> Duration {
        self.done_at.duration_since(self.invoked_at)
    }
}

/// One broadcast as a reader got it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub id: String,
    pub at: Instant,
}

/// What one reader client saw.
#[derive(Debug)]
pub struct Reader {
    pub deliveries: Vec<Delivery>,
    pub reconnects: u32,
    /// The server it ended on.
    pub addr: String,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Load running against a stack.
pub struct Workload {
    recording: Recording,
    publishes: Arc<Mutex<Vec<Publish>>>,
    received: Vec<Arc<Mutex<Vec<Delivery>>>>,
    stop_publishing: CancellationToken,
    stop_reading: CancellationToken,
    publishers: Vec<JoinHandle<()>>,
    readers: Vec<JoinHandle<Reader>>,
}

impl Workload {
    /// Starts reading on `readers` and publishing `rate_per_sec` messages
    /// `<prefix>-<n>` over the stack's gateway.
    pub fn start(
        stack: &ChaosStack,
        readers: Vec<ChatClient>,
        prefix: &str,
        rate_per_sec: u32,
    ) -> Workload {
        let recording = Recording::start();
        let publishes = Arc::new(Mutex::new(Vec::new()));
        let stop_publishing = CancellationToken::new();
        let stop_reading = CancellationToken::new();
        let mut received = Vec::new();
        let mut reader_tasks = Vec::new();
        for client in readers {
            let log = Arc::new(Mutex::new(Vec::new()));
            received.push(log.clone());
            let history = recording.client(client.info.user_id.clone());
            reader_tasks.push(tokio::spawn(read(
                client,
                log,
                history,
                stop_reading.clone(),
            )));
        }
        let publisher = tokio::spawn(publish_http(
            stack.pipeline().http_publisher(),
            format!("{prefix}-h"),
            rate_per_sec,
            Recorder::new(&recording, "http", &publishes),
            stop_publishing.clone(),
        ));
        Workload {
            recording,
            publishes,
            received,
            stop_publishing,
            stop_reading,
            publishers: vec![publisher],
            readers: reader_tasks,
        }
    }

    /// Also publishes over TCP with `client`, one `send` after the other,
    /// every `every`.
    pub fn with_tcp_publisher(mut self, client: ChatClient, prefix: &str, every: Duration) -> Self {
        let log = Recorder::new(&self.recording, "tcp", &self.publishes);
        self.publishers.push(tokio::spawn(publish_tcp(
            client,
            format!("{prefix}-t"),
            every,
            log,
            self.stop_publishing.clone(),
        )));
        self
    }

    /// The highest seq any reader has received so far.
    pub fn newest_seq(&self) -> u64 {
        let newest = |log: &Arc<Mutex<Vec<Delivery>>>| lock(log).last().map(|d| d.seq);
        self.received.iter().filter_map(newest).max().unwrap_or(0)
    }

    /// Stops publishing, waits until every reader has every acknowledged
    /// message (or `limit` passed), and returns the record.
    pub async fn finish(self, limit: Duration) -> Run {
        self.stop_publishing.cancel();
        for p in self.publishers {
            p.await.expect("publisher panicked");
        }
        let publishes = self
            .publishes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let acked: HashSet<&str> = publishes
            .iter()
            .filter(|p| p.outcome == Outcome::Acked)
            .map(|p| p.id.as_str())
            .collect();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let all_in = self.received.iter().all(|log| {
                let got = log.lock().unwrap_or_else(PoisonError::into_inner);
                let ids: HashSet<&str> = got.iter().map(|d| d.id.as_str()).collect();
                acked.is_subset(&ids)
            });
            if all_in {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Disconnects from here on are the harness tearing readers down.
        self.recording.drained();
        self.stop_reading.cancel();
        let mut readers = Vec::new();
        for r in self.readers {
            readers.push(r.await.expect("reader panicked"));
        }
        Run {
            publishes,
            readers,
            recording: Some(self.recording),
            history: None,
        }
    }
}

/// Where a publisher records each attempt: the timed list the recovery
/// times come from, and its log in the [`Recording`] for the checker.
#[derive(Clone)]
struct Recorder {
    timed: Arc<Mutex<Vec<Publish>>>,
    history: Arc<Mutex<PublishLog>>,
}

impl Recorder {
    fn new(recording: &Recording, name: &str, timed: &Arc<Mutex<Vec<Publish>>>) -> Recorder {
        Recorder {
            timed: timed.clone(),
            history: Arc::new(Mutex::new(recording.publisher(name))),
        }
    }

    /// Records the invocation; [`Recorder::done`] records its outcome.
    fn invoke(&self, id: &str) -> (OpId, Instant) {
        let op = lock(&self.history).invoke(id);
        (op, Instant::now())
    }

    fn done(&self, (op, invoked_at): (OpId, Instant), id: String, via: Via, outcome: Outcome) {
        {
            let mut log = lock(&self.history);
            match &outcome {
                Outcome::Acked => log.ok(op),
                Outcome::Refused { code, .. } => log.fail(op, code),
                Outcome::Unknown(_) => log.unknown(op),
            }
        }
        lock(&self.timed).push(Publish {
            id,
            via,
            invoked_at,
            done_at: Instant::now(),
            outcome,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Open loop: one publish task every `1 / rate_per_sec`, until stopped.
async fn publish_http(
    http: HttpPublisher,
    prefix: String,
    rate_per_sec: u32,
    log: Recorder,
    stop: CancellationToken,
) {
    let period = Duration::from_secs(1) / rate_per_sec.max(1);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut inflight = JoinSet::new();
    for n in 0.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let id = format!("{prefix}-{n}");
        let (http, log) = (http.clone(), log.clone());
        inflight.spawn(async move {
            let op = log.invoke(&id);
            let answer = tokio::time::timeout(
                PUBLISH_PATIENCE,
                http.post_message("chaos", "light load", Some(&id)),
            )
            .await;
            let outcome = match answer {
                Ok(Ok((202, _))) => Outcome::Acked,
                Ok(Ok((status, body))) => Outcome::Refused {
                    status,
                    code: body["code"].as_str().unwrap_or_default().to_owned(),
                },
                Ok(Err(e)) => Outcome::Unknown(e.to_string()),
                Err(_) => Outcome::Unknown(format!("no answer within {PUBLISH_PATIENCE:?}")),
            };
            log.done(op, id, Via::Http, outcome);
        });
    }
    while inflight.join_next().await.is_some() {}
}

/// Closed loop over one TCP session: `send`, wait for its answer, pause.
async fn publish_tcp(
    mut client: ChatClient,
    prefix: String,
    every: Duration,
    log: Recorder,
    stop: CancellationToken,
) {
    for n in 0.. {
        let id = format!("{prefix}-{n}");
        let op = log.invoke(&id);
        let outcome = match client.send("light load", Some(&id)).await {
            Ok(_) => Outcome::Acked,
            Err(ClientError::Server { code, .. }) => Outcome::Refused {
                status: 0,
                code: code.as_str().to_owned(),
            },
            Err(e) => Outcome::Unknown(e.to_string()),
        };
        log.done(op, id, Via::Tcp, outcome);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Reads broadcasts into `log` and `history` until stopped, heartbeating
/// now and then. The client dedupes by seq and hides its reconnects, so
/// `history` gets what the caller sees: each reconnect as a disconnect and
/// a login resuming from the seq it had delivered before the reconnect.
async fn read(
    mut client: ChatClient,
    log: Arc<Mutex<Vec<Delivery>>>,
    mut history: ClientLog,
    stop: CancellationToken,
) -> Reader {
    history.connected(client.info.last_seq, None);
    let mut reconnects = client.reconnects;
    let mut error = None;
    let mut last_heartbeat = Instant::now();
    loop {
        let resume_from = client.last_seq();
        if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            // Broadcasts that arrive meanwhile are kept by the client.
            let _ = client.heartbeat().await;
            last_heartbeat = Instant::now();
        }
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = client.next_broadcast(Duration::from_millis(500)) => next,
        };
        if client.reconnects != reconnects {
            reconnects = client.reconnects;
            history.disconnected("reconnect");
            history.connected(client.info.last_seq, Some(resume_from));
        }
        match next {
            Ok(b) => {
                history.delivered(b.seq, &b.message_id);
                lock(&log).push(Delivery {
                    seq: b.seq,
                    id: b.message_id,
                    at: Instant::now(),
                });
            }
            Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                error = Some(e.to_string());
                history.disconnected(&error_reason(&e));
                break;
            }
        }
    }
    if error.is_none() {
        history.disconnected("teardown");
    }
    let deliveries = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Reader {
        deliveries,
        reconnects: client.reconnects,
        addr: client.addr().to_owned(),
        error,
    }
}

/// A reader's disconnect reason: the error code, or what failed.
fn error_reason(e: &ClientError) -> String {
    match e {
        ClientError::Server { code, .. } => code.as_str().to_owned(),
        other => other.to_string(),
    }
}

/// The record of a finished workload.
pub struct Run {
    pub publishes: Vec<Publish>,
    pub readers: Vec<Reader>,
    /// Until [`Run::verdict`] finishes it.
    recording: Option<Recording>,
    /// The history, once finished.
    history: Option<History>,
}

impl Run {
    /// Publishes whose outcome is `Acked`.
    pub fn acked(&self) -> impl Iterator<Item = &Publish> {
        self.publishes
            .iter()
            .filter(|p| p.outcome == Outcome::Acked)
    }

    /// Publishes invoked within `[from, to)`.
    pub fn invoked_between(&self, from: Instant, to: Instant) -> Vec<Publish> {
        self.publishes
            .iter()
            .filter(|p| p.invoked_at >= from && p.invoked_at < to)
            .cloned()
            .collect()
    }

    /// From `t` to the first acknowledgement answered at or after `t`.
    pub fn first_ack_after(&self, t: Instant) -> Option<Duration> {
        self.acked()
            .filter(|p| p.done_at >= t)
            .map(|p| p.done_at.duration_since(t))
            .min()
    }

    /// From `t` until the last reader had every message acknowledged by
    /// `t` (zero if they all had them by then).
    pub fn caught_up_after(&self, t: Instant) -> Duration {
        let owed: HashSet<&str> = self
            .acked()
            .filter(|p| p.done_at <= t)
            .map(|p| p.id.as_str())
            .collect();
        self.readers
            .iter()
            .flat_map(|r| r.deliveries.iter())
            .filter(|d| owed.contains(d.id.as_str()))
            .map(|d| d.at.saturating_duration_since(t))
            .max()
            .unwrap_or_default()
    }

    /// From `t` until the last reader got its first broadcast after `t`.
    pub fn resumed_after(&self, t: Instant) -> Option<Duration> {
        self.readers
            .iter()
            .map(|r| {
                r.deliveries
                    .iter()
                    .find(|d| d.at >= t)
                    .map(|d| d.at.duration_since(t))
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    /// Counts by outcome: `acked 120, refused 503 broker_unavailable 31, …`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for p in &self.publishes {
            let key = match &p.outcome {
                Outcome::Acked => "acked".to_owned(),
                Outcome::Refused { status, code } => format!("refused {status} {code}"),
                Outcome::Unknown(_) => "unknown".to_owned(),
            };
            *counts.entry(key).or_default() += 1;
        }
        let reconnects: u32 = self.readers.iter().map(|r| r.reconnects).sum();
        let outcomes: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "{} publishes ({}); {} readers, {reconnects} reconnects",
            self.publishes.len(),
            outcomes.join(", "),
            self.readers.len()
        )
    }

    /// Reads PostgreSQL's rows once the sync worker holds every seq a
    /// reader received (waiting up to 60 s, also through an outage), adds
    /// them to the history and returns the history checker's verdict
    /// (design §8).
    pub async fn verdict(&mut self, p: &Pipeline) -> Verdict {
        if let Some(recording) = self.recording.take() {
            let newest = self
                .readers
                .iter()
                .flat_map(|r| r.deliveries.last())
                .map(|d| d.seq)
                .max()
                .unwrap_or_default();
            let rows = p
                .await_stored_messages(newest as usize, Duration::from_secs(60))
                .await
                .expect("PostgreSQL catches up");
            recording.stored(rows.iter().map(|(seq, id)| (*seq as u64, id.as_str())));
            self.history = Some(recording.finish().expect("every log handed back"));
        }
        self.history().check()
    }

    /// The recorded history (after [`Run::verdict`]).
    pub fn history(&self) -> &History {
        self.history.as_ref().expect("call Run::verdict first")
    }

    /// Design §4, invariants 1–3, as the history checker judges them: no
    /// acknowledged message lost at any reader or in PostgreSQL, nothing
    /// unexpected, every reader's seqs gap-free and in order, readers and
    /// PostgreSQL agreeing on each seq, PostgreSQL holding each acknowledged
    /// message once. Also no reader stopped early. Returns the verdict.
    pub async fn check(&mut self, p: &Pipeline) -> Verdict {
        for (i, r) in self.readers.iter().enumerate() {
            assert!(r.error.is_none(), "reader {i} stopped early: {:?}", r.error);
        }
        let verdict = self.verdict(p).await;
        println!("{verdict}");
        assert!(
            verdict.valid,
            "the history checker failed the run:\n{verdict}"
        );
        assert_eq!(
            verdict.totals.clients,
            self.readers.len() as u64,
            "every reader checked"
        );
        verdict
    }
}

/// `n` new users `<prefix>-<i>`, each logged in on server node `node`.
pub async fn readers(stack: &ChaosStack, prefix: &str, n: usize, node: usize) -> Vec<ChatClient> {
    readers_at(stack, prefix, n, &stack.server_addr(node)).await
}

/// `n` new users `<prefix>-<i>`, each logged in at `addr`.
pub async fn readers_at(stack: &ChaosStack, prefix: &str, n: usize, addr: &str) -> Vec<ChatClient> {
    let users = stack.pipeline().add_users(prefix, n).await.expect("users");
    let mut clients = Vec::new();
    for u in &users {
        let client = ChatClient::connect(addr, u, TEST_PASSWORD).await;
        clients.push(client.expect("login"));
    }
    clients
}

/// The two recovery times every suite prints, measured from `repaired_at`
/// (when the fault ended): the first acknowledged publish, and the last
/// reader holding every message acknowledged before it.
pub fn recovery(run: &Run, repaired_at: Instant) -> [(&'static str, Option<Duration>); 2] {
    [
        (
            "first acknowledged publish after the fault ended",
            run.first_ack_after(repaired_at),
        ),
        (
            "last reader caught up after the fault ended",
            Some(run.caught_up_after(repaired_at)),
        ),
    ]
}

/// Prints one suite's outcome and recovery times (shown with `--nocapture`
/// and for failures).
pub fn report(suite: &str, run: &Run, lines: &[(&str, Option<Duration>)]) {
    println!("[{suite}] {}", run.summary());
    for (what, took) in lines {
        match took {
            Some(d) => println!("[{suite}] {what}: {:.2} s", d.as_secs_f64()),
            None => println!("[{suite}] {what}: never"),
        }
    }
}

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
