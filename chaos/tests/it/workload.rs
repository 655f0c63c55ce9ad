//! Light load on a [`ChaosStack`] while a fault runs, and the checks every
//! stack suite makes afterwards. Publishing is open-loop over the gateway
//! (each publish its own task, so a hung one never delays the next) plus
//! an optional closed-loop TCP publisher; every attempt is recorded with
//! its outcome and times. Each reader client records what it received and
//! when. [`Run::check`] then asserts design §4's invariants 1–3 for these
//! clients and PostgreSQL, and [`Run`] measures recovery times.
//!
//! (A test-side recorder until the history checker lands in the library.)

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rtmc::client::{ChatClient, ClientError};
use rtmc::protocol::ErrorCode;
use rtmc_chaos::ChaosStack;
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
    /// The seq its deliveries start after (its login's `last_seq`).
    pub after_seq: u64,
    pub deliveries: Vec<Delivery>,
    pub reconnects: u32,
    /// The server it ended on.
    pub addr: String,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Load running against a stack.
pub struct Workload {
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
        let publishes = Arc::new(Mutex::new(Vec::new()));
        let stop_publishing = CancellationToken::new();
        let stop_reading = CancellationToken::new();
        let mut received = Vec::new();
        let mut reader_tasks = Vec::new();
        for client in readers {
            let log = Arc::new(Mutex::new(Vec::new()));
            received.push(log.clone());
            reader_tasks.push(tokio::spawn(read(client, log, stop_reading.clone())));
        }
        let publisher = tokio::spawn(publish_http(
            stack.pipeline().http_publisher(),
            format!("{prefix}-h"),
            rate_per_sec,
            publishes.clone(),
            stop_publishing.clone(),
        ));
        Workload {
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
        self.publishers.push(tokio::spawn(publish_tcp(
            client,
            format!("{prefix}-t"),
            every,
            self.publishes.clone(),
            self.stop_publishing.clone(),
        )));
        self
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
        self.stop_reading.cancel();
        let mut readers = Vec::new();
        for r in self.readers {
            readers.push(r.await.expect("reader panicked"));
        }
        Run { publishes, readers }
    }
}

/// Open loop: one publish task every `1 / rate_per_sec`, until stopped.
async fn publish_http(
    http: HttpPublisher,
    prefix: String,
    rate_per_sec: u32,
    log: Arc<Mutex<Vec<Publish>>>,
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
            let invoked_at = Instant::now();
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
            record(&log, id, Via::Http, invoked_at, outcome);
        });
    }
    while inflight.join_next().await.is_some() {}
}

/// Closed loop over one TCP session: `send`, wait for its answer, pause.
async fn publish_tcp(
    mut client: ChatClient,
    prefix: String,
    every: Duration,
    log: Arc<Mutex<Vec<Publish>>>,
    stop: CancellationToken,
) {
    for n in 0.. {
        let id = format!("{prefix}-{n}");
        let invoked_at = Instant::now();
        let outcome = match client.send("light load", Some(&id)).await {
            Ok(_) => Outcome::Acked,
            Err(ClientError::Server { code, .. }) => Outcome::Refused {
                status: 0,
                code: error_code_name(code),
            },
            Err(e) => Outcome::Unknown(e.to_string()),
        };
        record(&log, id, Via::Tcp, invoked_at, outcome);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The wire name of `code` (`broker_unavailable`).
fn error_code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

fn record(log: &Mutex<Vec<Publish>>, id: String, via: Via, invoked_at: Instant, outcome: Outcome) {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Publish {
            id,
            via,
            invoked_at,
            done_at: Instant::now(),
            outcome,
        });
}

/// Reads broadcasts into `log` until stopped, heartbeating now and then.
async fn read(
    mut client: ChatClient,
    log: Arc<Mutex<Vec<Delivery>>>,
    stop: CancellationToken,
) -> Reader {
    let after_seq = client.last_seq();
    let mut error = None;
    let mut last_heartbeat = Instant::now();
    loop {
        if last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            // Broadcasts that arrive meanwhile are kept by the client.
            let _ = client.heartbeat().await;
            last_heartbeat = Instant::now();
        }
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = client.next_broadcast(Duration::from_millis(500)) => next,
        };
        match next {
            Ok(b) => log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Delivery {
                    seq: b.seq,
                    id: b.message_id,
                    at: Instant::now(),
                }),
            Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let deliveries = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
    Reader {
        after_seq,
        deliveries,
        reconnects: client.reconnects,
        addr: client.addr().to_owned(),
        error,
    }
}

/// The record of a finished workload.
pub struct Run {
    pub publishes: Vec<Publish>,
    pub readers: Vec<Reader>,
}

impl Run {
    /// Publishes whose outcome is `Acked`.
    pub fn acked(&self) -> impl Iterator<Item = &Publish> {
        self.publishes
            .iter()
            .filter(|p| p.outcome == Outcome::Acked)
    }

    /// Publishes invoked within `[from, to)`.
    pub fn invoked_between(&self, from: Instant, to: Instant) -> Vec<&Publish> {
        self.publishes
            .iter()
            .filter(|p| p.invoked_at >= from && p.invoked_at < to)
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

    /// Design §4, invariants 1–3, for these readers and PostgreSQL: every
    /// reader got every acknowledged message, nothing never published, in
    /// gap-free seq order with each seq once, all readers agree on the
    /// order; after the drain PostgreSQL holds each acknowledged message
    /// once, in the same order. Returns the number of messages stored.
    pub async fn check(&self, p: &Pipeline) -> usize {
        let attempted: HashSet<&str> = self.publishes.iter().map(|p| p.id.as_str()).collect();
        let acked: HashSet<&str> = self.acked().map(|p| p.id.as_str()).collect();
        let mut order: BTreeMap<u64, &str> = BTreeMap::new();
        for (i, r) in self.readers.iter().enumerate() {
            assert!(r.error.is_none(), "reader {i} stopped early: {:?}", r.error);
            for (expected, d) in (r.after_seq + 1..).zip(&r.deliveries) {
                assert_eq!(
                    d.seq, expected,
                    "reader {i}: gap, duplicate or reorder at {d:?}"
                );
                assert!(
                    attempted.contains(d.id.as_str()),
                    "reader {i}: unexpected {d:?}"
                );
                let agreed = *order.entry(d.seq).or_insert(d.id.as_str());
                assert_eq!(agreed, d.id, "reader {i}: seq {} is another message", d.seq);
            }
            let got: HashSet<&str> = r.deliveries.iter().map(|d| d.id.as_str()).collect();
            let mut lost: Vec<&&str> = acked.difference(&got).collect();
            lost.sort();
            assert!(
                lost.is_empty(),
                "reader {i} lost {} acknowledged: {lost:?}",
                lost.len()
            );
        }
        let newest = order.keys().next_back().copied().unwrap_or_default();
        let rows = p
            .await_stored_messages(newest as usize, Duration::from_secs(60))
            .await
            .expect("PostgreSQL catches up");
        let mut stored: HashMap<&str, Vec<i64>> = HashMap::new();
        for (i, (seq, id)) in rows.iter().enumerate() {
            assert_eq!(
                *seq,
                i as i64 + 1,
                "PostgreSQL: gap or duplicate seq at row {i}"
            );
            stored.entry(id.as_str()).or_default().push(*seq);
            if let Some(seen) = order.get(&(*seq as u64)) {
                assert_eq!(seen, id, "PostgreSQL has another message at seq {seq}");
            }
        }
        for id in &acked {
            let seqs = stored.get(id).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(
                seqs.len(),
                1,
                "{id} stored {} times in PostgreSQL",
                seqs.len()
            );
        }
        rows.len()
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
