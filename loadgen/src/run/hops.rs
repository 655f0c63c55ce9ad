//! `loadgen hops`: the ingest path's hops measured one at a time, in one
//! run on one stack, so a report can name the bottleneck. Each hop runs
//! closed-loop at its own ceiling (a bounded window of requests in flight)
//! for a fixed time and reports messages/s and the per-message ack latency:
//! - `rabbitmq`: lapin alone, persistent publishes with confirms to a
//!   scratch durable queue, 1..N channels with a window of pipelined
//!   confirms each, on a classic and on a quorum queue;
//! - `redis-append`: the consumer's append script alone (dedupe + seq +
//!   XADD, AOF `appendfsync always`), batches of several sizes;
//! - `gateway`: `POST /v1/service/messages` → 202 (gateway + broker confirm);
//! - `tcp-server`: pipelined `send` → `send_ack` on publish-only sessions;
//! - `consumer`: the queue the two entries filled, drained into Redis by
//!   one consumer process (the consumer's own ceiling).
//!
//! The ingest ceiling over an entry is the lower of the entry's and the
//! consumer's; the hop that sets it is the bottleneck.
//!
//! `--rounds N` measures every hop N times, round after round on the same
//! stack (a single run on a shared machine is not a figure, design.md §7):
//! each row then reports the median with its min–max over the rounds, and
//! the bottlenecks come from the medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rtmc::broker::PublishedMessage;
use rtmc::config::Config;
use rtmc::protocol::{ClientCommand, ServerFrame};
use rtmc::stream::{self, RedisKeys};
use rtmc_stats::Spread;
use rtmc_testkit::{raw, NodeProcess, Pipeline, Role, Services};
use serde::Serialize;

/// What to measure and how hard.
#[derive(Debug, Clone)]
pub struct HopsOptions {
    /// Seconds each measurement runs.
    pub duration_secs: f64,
    /// RabbitMQ channel counts to try.
    pub channels: Vec<usize>,
    /// Confirms in flight per RabbitMQ channel.
    pub confirm_window: usize,
    /// Messages per append-script call to try.
    pub batch_sizes: Vec<usize>,
    /// Concurrent HTTP requests against the gateway.
    pub http_concurrency: usize,
    /// Publish-only TCP connections against the server node.
    pub tcp_connections: usize,
    /// Sends in flight per TCP connection.
    pub tcp_window: usize,
    /// Message body size in bytes.
    pub body_bytes: usize,
    /// How long the consumer may take to drain the queue.
    pub drain_timeout_secs: f64,
    /// `rabbitmq.publisher_channels` of the gateway and the server node
    /// (`None`: rtmc's default).
    pub publisher_channels: Option<usize>,
    /// `rabbitmq.queue_type` of the stack (`None`: rtmc's default).
    pub queue_type: Option<rtmc::config::QueueType>,
    /// Times every hop is measured, one round after another (at least 1).
    pub rounds: usize,
}

impl Default for HopsOptions {
    fn default() -> Self {
        Self {
            duration_secs: 5.0,
            channels: vec![1, 2, 4, 8],
            confirm_window: 256,
            batch_sizes: vec![1, 64, 256],
            http_concurrency: 128,
            tcp_connections: 8,
            tcp_window: 128,
            body_bytes: 16,
            drain_timeout_secs: 60.0,
            publisher_channels: None,
            queue_type: None,
            rounds: 1,
        }
    }
}

/// One measurement of one hop.
#[derive(Debug, Clone, Serialize)]
pub struct HopResult {
    pub hop: String,
    /// The knob's value (channels × window, batch size, concurrency).
    pub setting: String,
    pub acked: u64,
    pub errors: u64,
    pub elapsed_secs: f64,
    pub rate_per_sec: f64,
    /// Per message (per batch for `redis-append`), publish → ack.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
}

/// The ingest ceiling over one entry and the hop that sets it.
#[derive(Debug, Clone, Serialize)]
pub struct Bottleneck {
    pub entry: String,
    pub ceiling_per_sec: f64,
    pub hop: String,
}

/// One row (hop and setting) over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct HopSpread {
    pub hop: String,
    pub setting: String,
    /// Errors of every round together.
    pub errors: u64,
    /// Median and min–max of msg/s over the rounds.
    pub rate_per_sec: Option<Spread>,
    /// Median and min–max of the ack p99 (ms) over the rounds.
    pub ack_p99_ms: Option<Spread>,
}

/// Every hop's measurements and the bottlenecks they point at.
#[derive(Debug, Clone, Serialize)]
pub struct HopsReport {
    /// Round 1's rows (the only round without `--rounds`).
    pub results: Vec<HopResult>,
    /// Every round's rows, in round order (one round without `--rounds`).
    pub rounds: Vec<Vec<HopResult>>,
    /// Per row, the median and min–max over the rounds (empty for one).
    pub spreads: Vec<HopSpread>,
    /// From round 1's rows, or from the medians over the rounds.
    pub bottlenecks: Vec<Bottleneck>,
}

impl HopsReport {
    /// The report of `rounds` (each a round's rows, in the same order).
    pub fn of(rounds: Vec<Vec<HopResult>>) -> Self {
        let results = rounds.first().cloned().unwrap_or_default();
        let (spreads, bottlenecks) = if rounds.len() > 1 {
            let spreads = spreads(&rounds);
            let medians: Vec<HopResult> = spreads
                .iter()
                .filter_map(|s| {
                    Some(HopResult {
                        hop: s.hop.clone(),
                        setting: s.setting.clone(),
                        rate_per_sec: s.rate_per_sec?.median,
                        ..row_template()
                    })
                })
                .collect();
            let b = bottlenecks(&medians);
            (spreads, b)
        } else {
            (Vec::new(), bottlenecks(&results))
        };
        Self {
            results,
            rounds,
            spreads,
            bottlenecks,
        }
    }
}

/// A row with nothing measured.
fn row_template() -> HopResult {
    HopResult {
        hop: String::new(),
        setting: String::new(),
        acked: 0,
        errors: 0,
        elapsed_secs: 0.0,
        rate_per_sec: f64::NAN,
        ack_p50_ms: f64::NAN,
        ack_p99_ms: f64::NAN,
    }
}

/// Per row of round 1 (hop and setting), its figures over every round.
fn spreads(rounds: &[Vec<HopResult>]) -> Vec<HopSpread> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|row| {
            let same: Vec<&HopResult> = rounds
                .iter()
                .flatten()
                .filter(|r| r.hop == row.hop && r.setting == row.setting)
                .collect();
            let over = |read: fn(&HopResult) -> f64| {
                Spread::of(&same.iter().map(|r| read(r)).collect::<Vec<_>>())
            };
            HopSpread {
                hop: row.hop.clone(),
                setting: row.setting.clone(),
                errors: same.iter().map(|r| r.errors).sum(),
                rate_per_sec: over(|r| r.rate_per_sec),
                ack_p99_ms: over(|r| r.ack_p99_ms),
            }
        })
        .collect()
}

/// Latency histogram in microseconds, 1 µs to 100 s.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

fn record(h: &mut Histogram<u64>, since: Instant) {
    let us = since.elapsed().as_micros().clamp(1, 100_000_000) as u64;
    h.saturating_record(us);
}

/// Counts and latencies of one worker (a channel, a connection, a task).
struct Tally {
    acked: u64,
    errors: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            acked: 0,
            errors: 0,
            latency_us: histogram(),
        }
    }

    fn merge(mut self, other: Tally) -> Self {
        self.acked += other.acked;
        self.errors += other.errors;
        let _ = self.latency_us.add(&other.latency_us);
        self
    }

    fn result(self, hop: &str, setting: String, elapsed: Duration, per: u64) -> HopResult {
        let ms = |q: f64| self.latency_us.value_at_quantile(q) as f64 / 1000.0;
        HopResult {
            hop: hop.into(),
            setting,
            acked: self.acked * per,
            errors: self.errors,
            elapsed_secs: elapsed.as_secs_f64(),
            rate_per_sec: (self.acked * per) as f64 / elapsed.as_secs_f64().max(1e-9),
            ack_p50_ms: ms(0.5),
            ack_p99_ms: ms(0.99),
        }
    }
}

/// A message of the run, as the entries and the broker carry it.
fn message(id: String, body_bytes: usize) -> PublishedMessage {
    PublishedMessage {
        message_id: id,
        from: "service:hops".into(),
        body: "x".repeat(body_bytes.max(1)),
        received_at_us: rtmc::protocol::now_us(),
        sent_at_us: rtmc::protocol::now_us(),
        room: None,
    }
}

/// The stack the hops run on: containers, and a gateway, a server node and
/// (for the drain) a consumer as `rtmc` processes.
struct HopsStack {
    cfg: Config,
    gateway_url: String,
    server_addr: String,
    api_key: String,
    binary: std::path::PathBuf,
    nodes: Vec<NodeProcess>,
    _pipeline: Pipeline,
    _services: Services,
}

impl HopsStack {
    async fn start(opts: &HopsOptions) -> anyhow::Result<Self> {
        let binary = rtmc_testkit::process::rtmc_binary()?;
        let services = Services::start().await?;
        let pipeline = crate::stack::namespace_only(&services, None).await?;
        pipeline
            .add_users("hops", opts.tcp_connections.max(1))
            .await?;
        let mut cfg = (*pipeline.cfg).clone();
        if let Some(n) = opts.publisher_channels {
            cfg.rabbitmq.publisher_channels = n;
        }
        if let Some(t) = opts.queue_type {
            cfg.rabbitmq.queue_type = t;
        }
        let gateway = NodeProcess::spawn(Role::Gateway, cfg.clone(), &binary).await?;
        // The hop measures the node's ceiling, not its abuse limits.
        let mut server_cfg = cfg.clone();
        server_cfg.server.max_sends_per_sec = 10_000_000;
        server_cfg.server.max_frames_per_sec = 10_000_000;
        let server = NodeProcess::spawn(Role::Server, server_cfg, &binary).await?;
        let addr = |n: &NodeProcess| {
            n.addr
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{:?} has no address", n.role))
        };
        Ok(Self {
            gateway_url: format!("http://{}", addr(&gateway)?),
            server_addr: addr(&server)?,
            api_key: cfg
                .gateway
                .api_keys
                .first()
                .map(|k| k.expose_secret().clone())
                .ok_or_else(|| anyhow::anyhow!("the pipeline has no API key"))?,
            cfg,
            binary,
            nodes: vec![gateway, server],
            _pipeline: pipeline,
            _services: services,
        })
    }

    async fn shutdown(mut self) {
        for n in self.nodes.drain(..) {
            let _ = n.stop().await;
        }
    }
}

/// Runs every hop on a stack of its own and names the bottleneck.
pub async fn run(opts: &HopsOptions, progress: impl Fn(&HopResult)) -> anyhow::Result<HopsReport> {
    anyhow::ensure!(opts.duration_secs > 0.0, "--duration-secs must be positive");
    anyhow::ensure!(opts.rounds >= 1, "--rounds must be at least 1");
    let stack = HopsStack::start(opts).await?;
    let mut rounds = Vec::new();
    let mut outcome = Ok(());
    for _ in 0..opts.rounds {
        match run_on(&stack, opts, &progress).await {
            Ok(rows) => rounds.push(rows),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    stack.shutdown().await;
    outcome?;
    Ok(HopsReport::of(rounds))
}

async fn run_on(
    stack: &HopsStack,
    opts: &HopsOptions,
    progress: &impl Fn(&HopResult),
) -> anyhow::Result<Vec<HopResult>> {
    let duration = Duration::from_secs_f64(opts.duration_secs);
    let mut results = Vec::new();
    let mut keep = |r: HopResult| {
        progress(&r);
        results.push(r);
    };
    for quorum in [false, true] {
        for &channels in &opts.channels {
            keep(rabbitmq_hop(&stack.cfg, quorum, channels.max(1), opts, duration).await?);
        }
    }
    for &batch in &opts.batch_sizes {
        keep(redis_hop(&stack.cfg, batch.max(1), opts.body_bytes, duration).await?);
    }
    let gateway = gateway_hop(stack, opts, duration).await?;
    let tcp = tcp_hop(stack, opts, duration).await?;
    let queued = gateway.acked + tcp.acked;
    keep(gateway);
    keep(tcp);
    keep(consumer_hop(stack, queued, opts.drain_timeout_secs).await?);
    Ok(results)
}

/// Publishes persistently with confirms on `channels` channels, each with
/// `confirm_window` confirms in flight, to a scratch durable queue.
async fn rabbitmq_hop(
    cfg: &Config,
    quorum: bool,
    channels: usize,
    opts: &HopsOptions,
    duration: Duration,
) -> anyhow::Result<HopResult> {
    let conn = Connection::connect(
        cfg.rabbitmq.url.expose_secret(),
        ConnectionProperties::default(),
    )
    .await?;
    let kind = if quorum { "quorum" } else { "classic" };
    let queue = format!("{}.hops.{kind}.{channels}", cfg.rabbitmq.queue);
    let mut args = FieldTable::default();
    if quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    let chans = confirming_channels(&conn, channels, &queue, args).await?;
    let payload = Arc::new(serde_json::to_vec(&message(
        "hops-rabbitmq".into(),
        opts.body_bytes,
    ))?);
    let started = Instant::now();
    let deadline = started + duration;
    let workers = chans.iter().map(|ch| {
        confirm_loop(
            ch.clone(),
            queue.clone(),
            payload.clone(),
            opts.confirm_window.max(1),
            deadline,
        )
    });
    let tally = all_of(workers).await;
    let elapsed = started.elapsed();
    let _ = chans[0]
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "hops done".into()).await;
    let setting = format!(
        "{kind} queue, {channels} ch × {} confirms",
        opts.confirm_window
    );
    Ok(tally.result("rabbitmq", setting, elapsed, 1))
}

/// `channels` channels of `conn` in confirm mode (at least one), the
/// durable `queue` declared with `args` on the first.
async fn confirming_channels(
    conn: &Connection,
    channels: usize,
    queue: &str,
    args: FieldTable,
) -> anyhow::Result<Vec<Channel>> {
    let mut chans = Vec::new();
    for _ in 0..channels.max(1) {
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        chans.push(ch);
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    chans[0].queue_declare(queue.into(), durable, args).await?;
    Ok(chans)
}

async fn confirm_loop(
    ch: Channel,
    queue: String,
    payload: Arc<Vec<u8>>,
    window: usize,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < window && Instant::now() < deadline {
            let sent = Instant::now();
            let props = BasicProperties::default().with_delivery_mode(2);
            let published = ch
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props,
                )
                .await;
            match published {
                Ok(confirm) => inflight.push(async move { (sent, confirm.await) }),
                Err(_) => {
                    tally.errors += 1;
                    break;
                }
            }
        }
        match inflight.next().await {
            None => return tally,
            Some((sent, Ok(c))) if c.is_ack() => {
                tally.acked += 1;
                record(&mut tally.latency_us, sent);
            }
            Some(_) => tally.errors += 1,
        }
    }
}

/// Calls the append script with `batch` new messages at a time, one call
/// at a time (as one consumer does).
async fn redis_hop(
    cfg: &Config,
    batch: usize,
    body_bytes: usize,
    duration: Duration,
) -> anyhow::Result<HopResult> {
    let mut conn = stream::managed_connection(cfg.redis.url.expose_secret()).await?;
    // Keys of this measurement alone: a later round must append, not find
    // its ids already seen (the script's dedupe path is far cheaper).
    let keys = RedisKeys::new(&format!(
        "{}-hops-b{batch}-{}",
        cfg.redis.key_prefix,
        run_tag()
    ));
    let mut tally = Tally::new();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        let items: Vec<(String, Vec<u8>)> = (0..batch)
            .map(|_| {
                n += 1;
                let msg = message(format!("hops-{n}"), body_bytes);
                (msg.message_id.clone(), rtmc::consumer::broadcast_tail(&msg))
            })
            .collect();
        let sent = Instant::now();
        match stream::append_batch(&mut conn, &keys, 60, &items).await {
            Ok(_) => {
                tally.acked += 1;
                record(&mut tally.latency_us, sent);
            }
            Err(_) => tally.errors += 1,
        }
    }
    let elapsed = started.elapsed();
    let setting = format!("batch {batch} (latency per call)");
    Ok(tally.result("redis-append", setting, elapsed, batch as u64))
}

/// `concurrency` tasks each posting one message after another.
async fn gateway_hop(
    stack: &HopsStack,
    opts: &HopsOptions,
    duration: Duration,
) -> anyhow::Result<HopResult> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.http_concurrency)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/v1/service/messages", stack.gateway_url);
    let started = Instant::now();
    let deadline = started + duration;
    // Ids unique to this measurement: the consumer drops ids it has seen,
    // so a later round reusing them would queue entries never appended.
    let run = run_tag();
    let workers = (0..opts.http_concurrency.max(1)).map(|w| {
        let (http, url, key) = (http.clone(), url.clone(), stack.api_key.clone());
        let run = run.clone();
        let body = "x".repeat(opts.body_bytes.max(1));
        async move {
            let mut tally = Tally::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let req = serde_json::json!({"sender": "hops", "body": body, "message_id": format!("hg-{run}-{w}-{i}")});
                let sent = Instant::now();
                let answer = http.post(&url).header("x-api-key", &key).json(&req).send().await;
                match answer {
                    Ok(r) if r.status().as_u16() == 202 => {
                        tally.acked += 1;
                        record(&mut tally.latency_us, sent);
                    }
                    _ => tally.errors += 1,
                }
            }
            tally
        }
    });
    let tally = all_of(workers).await;
    let setting = format!(
        "{} concurrent requests, {}",
        opts.http_concurrency,
        publisher_setting(stack)
    );
    Ok(tally.result("gateway", setting, started.elapsed(), 1))
}

/// Every worker's tally, merged.
async fn all_of(
    workers: impl IntoIterator<Item = impl std::future::Future<Output = Tally>>,
) -> Tally {
    futures::future::join_all(workers)
        .await
        .into_iter()
        .fold(Tally::new(), Tally::merge)
}

/// The stack's publisher settings, as a hop's setting names them.
fn publisher_setting(stack: &HopsStack) -> String {
    format!(
        "{} publisher channels, {} queue",
        stack.cfg.rabbitmq.publisher_channels,
        stack.cfg.rabbitmq.queue_type.as_str()
    )
}

/// `tcp_connections` publish-only sessions, each sending a window of
/// `tcp_window` sends, then reading their answers, until the time is up.
async fn tcp_hop(
    stack: &HopsStack,
    opts: &HopsOptions,
    duration: Duration,
) -> anyhow::Result<HopResult> {
    let mut conns = Vec::new();
    for i in 0..opts.tcp_connections.max(1) {
        let mut c = raw::connect(&stack.server_addr).await?;
        raw::login_publish_only(&mut c, &format!("hops-{i}")).await?;
        conns.push(c);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let window = opts.tcp_window.max(1);
    let run = run_tag();
    let workers = conns.into_iter().enumerate().map(|(w, mut c)| {
        let body = "x".repeat(opts.body_bytes.max(1));
        let run = run.clone();
        async move {
            let mut tally = Tally::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                for _ in 0..window {
                    i += 1;
                    let send = ClientCommand::Send {
                        room: None,
                        to: None,
                        body: body.clone(),
                        message_id: Some(format!("ht-{run}-{w}-{i}")),
                        sent_at_us: None,
                    };
                    if c.send(&send).await.is_err() {
                        return tally;
                    }
                }
                for _ in 0..window {
                    match c.recv_timeout(Duration::from_secs(10)).await {
                        Ok(ServerFrame::SendAck { .. }) => {
                            tally.acked += 1;
                            record(&mut tally.latency_us, sent);
                        }
                        Ok(_) => tally.errors += 1,
                        Err(_) => return tally,
                    }
                }
            }
            tally
        }
    });
    let tally = all_of(workers).await;
    let setting = format!(
        "{} connections × {window} pipelined (latency from the window's start), {}",
        opts.tcp_connections,
        publisher_setting(stack)
    );
    Ok(tally.result("tcp-server", setting, started.elapsed(), 1))
}

/// A short tag unique to one measurement, for its message ids.
fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Starts a consumer on the queue the entries filled (`queued` messages)
/// and times how fast it appends them to Redis, from just before its first
/// append.
async fn consumer_hop(
    stack: &HopsStack,
    queued: u64,
    drain_timeout_secs: f64,
) -> anyhow::Result<HopResult> {
    let mut redis = stream::managed_connection(stack.cfg.redis.url.expose_secret()).await?;
    let keys = RedisKeys::new(&stack.cfg.redis.key_prefix);
    // Earlier rounds' entries are in the stream already: count from here.
    let start = stream::head(&mut redis, &keys).await?;
    let target = start + queued;
    let consumer = NodeProcess::spawn(Role::Consumer, stack.cfg.clone(), &stack.binary).await?;
    let limit = Duration::from_secs_f64(drain_timeout_secs);
    let spawned = Instant::now();
    // The drain is timed from the last poll that saw nothing appended yet
    // (the consumer's start-up is not its speed) to the poll that saw it
    // all, and counts every entry: a queue small enough to land in one
    // batch is still a measurement, not zero entries in no time.
    let mut before_first = spawned;
    let mut head = start;
    while spawned.elapsed() < limit {
        head = stream::head(&mut redis, &keys).await?;
        if head == start {
            before_first = Instant::now();
        }
        if head >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = before_first.elapsed();
    let _ = consumer.stop().await;
    anyhow::ensure!(
        head > start,
        "the consumer appended nothing within {limit:?}"
    );
    anyhow::ensure!(
        head >= target,
        "the consumer appended {} of {queued} within {limit:?}",
        head - start
    );
    let drained = head - start;
    Ok(HopResult {
        hop: "consumer".into(),
        // The same setting every round (the count queued varies), so the
        // rounds' rows of this hop meet in one spread.
        setting: format!(
            "drain of the queued entries (prefetch {}, batch {}, {} queue)",
            stack.cfg.rabbitmq.prefetch,
            stack.cfg.consumer.batch_max,
            stack.cfg.rabbitmq.queue_type.as_str()
        ),
        acked: drained,
        errors: 0,
        elapsed_secs: elapsed.as_secs_f64(),
        rate_per_sec: drained as f64 / elapsed.as_secs_f64().max(1e-9),
        ack_p50_ms: f64::NAN,
        ack_p99_ms: f64::NAN,
    })
}

/// Best rate of `hop` among the results.
fn best(results: &[HopResult], hop: &str) -> Option<f64> {
    results
        .iter()
        .filter(|r| r.hop == hop)
        .map(|r| r.rate_per_sec)
        .reduce(f64::max)
}

/// Per entry, the lower of the entry's and the consumer's ceilings.
pub fn bottlenecks(results: &[HopResult]) -> Vec<Bottleneck> {
    let consumer = best(results, "consumer");
    ["gateway", "tcp-server"]
        .iter()
        .filter_map(|entry| {
            let e = best(results, entry)?;
            let (hop, ceiling) = match consumer {
                Some(c) if c < e => ("consumer", c),
                _ => (*entry, e),
            };
            Some(Bottleneck {
                entry: (*entry).into(),
                ceiling_per_sec: ceiling,
                hop: hop.into(),
            })
        })
        .collect()
}

/// The report as text: one row per measurement (per row the median and
/// min–max when there were rounds), then the bottlenecks.
pub fn render(report: &HopsReport) -> String {
    if report.rounds.len() > 1 {
        return render_rounds(report);
    }
    let mut out = String::from(
        "| hop | setting | acked | errors | msg/s | ack p50 ms | ack p99 ms |\n|---|---|---|---|---|---|---|\n",
    );
    for r in &report.results {
        let ms = |v: f64| {
            if v.is_nan() {
                "—".to_string()
            } else {
                format!("{v:.1}")
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} |\n",
            r.hop,
            r.setting,
            r.acked,
            r.errors,
            r.rate_per_sec,
            ms(r.ack_p50_ms),
            ms(r.ack_p99_ms)
        ));
    }
    for b in &report.bottlenecks {
        out.push_str(&format!(
            "ingest over {}: ceiling ≈ {:.0} msg/s, set by {}\n",
            b.entry, b.ceiling_per_sec, b.hop
        ));
    }
    out
}

/// The rounds' text: per row the median [min–max] of msg/s and ack p99.
fn render_rounds(report: &HopsReport) -> String {
    let n = report.rounds.len();
    let mut out = format!(
        "{n} rounds, one after another on the same stack: median [min–max] over the rounds\n\n| hop | setting | msg/s | ack p99 ms | errors (all rounds) |\n|---|---|---|---|---|\n"
    );
    for s in &report.spreads {
        // A round that measured nothing is left out of the spread: say so.
        let measured = s.rate_per_sec.map_or(0, |r| r.n);
        let short = if measured < n {
            format!(" ({measured} of {n} rounds)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {} | {}{short} | {} | {} |\n",
            s.hop,
            s.setting,
            crate::report::rounds::spread_text(&s.rate_per_sec, 0),
            crate::report::rounds::spread_text(&s.ack_p99_ms, 1),
            s.errors
        ));
    }
    for b in &report.bottlenecks {
        out.push_str(&format!(
            "ingest over {}: ceiling ≈ {:.0} msg/s (median of {n} rounds), set by {}\n",
            b.entry, b.ceiling_per_sec, b.hop
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(hop: &str, rate: f64) -> HopResult {
        HopResult {
            hop: hop.into(),
            setting: String::new(),
            acked: 1,
            errors: 0,
            elapsed_secs: 1.0,
            rate_per_sec: rate,
            ack_p50_ms: 1.0,
            ack_p99_ms: 2.0,
        }
    }

    #[test]
    fn the_slower_of_entry_and_consumer_is_the_bottleneck() {
        let results = [
            row("gateway", 6000.0),
            row("gateway", 5000.0),
            row("tcp-server", 12000.0),
            row("consumer", 9000.0),
        ];
        let b = bottlenecks(&results);
        assert_eq!(
            (b[0].entry.as_str(), b[0].hop.as_str(), b[0].ceiling_per_sec),
            ("gateway", "gateway", 6000.0)
        );
        assert_eq!(
            (b[1].entry.as_str(), b[1].hop.as_str(), b[1].ceiling_per_sec),
            ("tcp-server", "consumer", 9000.0)
        );
        assert!(render(&HopsReport::of(vec![results.to_vec()])).contains("set by consumer"));
    }

    #[test]
    fn rounds_give_each_row_its_median_and_range_and_bottlenecks_from_medians() {
        let round = |gateway: f64, consumer: f64| {
            vec![
                row("gateway", gateway),
                row("tcp-server", 12000.0),
                row("consumer", consumer),
            ]
        };
        // Round 1 alone would say the gateway (5000 < 9000) sets the
        // gateway's ceiling; over three rounds the consumer's median does.
        let r = HopsReport::of(vec![
            round(5000.0, 9000.0),
            round(8000.0, 3000.0),
            round(7000.0, 4000.0),
        ]);
        assert_eq!(r.results[0].rate_per_sec, 5000.0);
        assert_eq!(r.rounds.len(), 3);
        let g = r.spreads[0].rate_per_sec.unwrap();
        assert_eq!((g.median, g.min, g.max, g.n), (7000.0, 5000.0, 8000.0, 3));
        assert_eq!(
            (
                r.bottlenecks[0].hop.as_str(),
                r.bottlenecks[0].ceiling_per_sec
            ),
            ("consumer", 4000.0)
        );
        let text = render(&r);
        assert!(text.contains("| gateway |  | 7000 [5000–8000] |"), "{text}");
        assert!(
            text.contains("(median of 3 rounds), set by consumer"),
            "{text}"
        );
        // A row a round measured nothing for says how many rounds it has.
        let short = HopsReport::of(vec![round(5000.0, 9000.0), round(6000.0, f64::NAN)]);
        assert!(
            render(&short).contains("| 9000 [9000–9000] (1 of 2 rounds) |"),
            "{}",
            render(&short)
        );
        // One round: no spreads, the plain table.
        let one = HopsReport::of(vec![round(5000.0, 9000.0)]);
        assert!(one.spreads.is_empty());
        assert!(!render(&one).contains("median"));
    }
}
