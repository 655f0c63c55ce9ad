//! The publishing side: an open-loop schedule at a fixed aggregate rate
//! (tick `i` is due at `start + i / rate`, never derived from when the
//! previous send completed), over pipelined TCP `send`s, HTTP
//! `POST /v1/service/messages`, Redis `PUBLISH` for the floor, or NATS `PUB`
//! (core) and JetStream publishes awaited for their `PubAck` for the NATS
//! peers. Every message
//! carries its intended send time, so latency is corrected for coordinated
//! omission, and a publisher sequence in its message id.

use std::iter::Peekable;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{now_us, ClientCommand, ErrorCode, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::accounting::set_bit;
use crate::live::LiveStats;
use crate::nats_wire::{self, NatsOp};
use crate::observe::SharedPublishObserver;
use crate::resp::{self, RespItem};
use crate::wire::{self, MessageOrigin};

/// Error messages kept as samples for the report, per channel.
const ERROR_SAMPLES: usize = 5;
/// Messages coalesced into one write at most, when a publisher is behind.
const MAX_BATCH_MESSAGES: u64 = 512;
/// Frames larger than this from the server are not expected on a publisher
/// connection; the bound only keeps a corrupt length from allocating.
const PUBLISHER_MAX_FRAME_BYTES: usize = usize::MAX >> 1;

/// When each message of a phase is due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate_per_sec: f64,
    /// Monotonic start.
    pub start: tokio::time::Instant,
    /// The same instant on the wall clock, microseconds since the epoch.
    pub start_wall_us: u64,
    /// Messages in the phase.
    pub total: u64,
    /// Publisher sequence of tick 0 (ids stay unique across ramp steps).
    pub seq_base: u64,
}

impl Schedule {
    /// A schedule of `rate_per_sec × duration_secs` messages starting now.
    pub fn starting_now(rate_per_sec: f64, duration_secs: f64) -> Self {
        let start_wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self {
            rate_per_sec,
            start: tokio::time::Instant::now(),
            start_wall_us,
            total: (rate_per_sec * duration_secs).round().max(0.0) as u64,
            seq_base: 0,
        }
    }

    /// Offset of tick `i` from the start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate_per_sec)
    }

    /// When tick `i` is due.
    pub fn due(&self, i: u64) -> tokio::time::Instant {
        self.start + self.offset(i)
    }

    /// Tick `i`'s intended send time on the wall clock (µs since the epoch).
    pub fn intended_us(&self, i: u64) -> u64 {
        self.start_wall_us + self.offset(i).as_micros() as u64
    }

    /// Ticks due by `elapsed` after the start (the next tick index to send).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let n = (elapsed.as_secs_f64() * self.rate_per_sec).floor() as u64 + 1;
        n.min(self.total)
    }
}

/// How the messages travel.
#[derive(Debug, Clone)]
pub enum Channel {
    /// A logged-in TCP connection sending pipelined `send`s.
    Tcp {
        addr: SocketAddr,
        user: String,
        password: String,
    },
    /// The HTTP gateway with an API key.
    Http {
        base_url: String,
        api_key: String,
        concurrency: usize,
    },
    /// A Redis connection pipelining `PUBLISH channel payload`.
    Redis { addr: SocketAddr, channel: String },
    /// A NATS connection pipelining `PUB subject payload` + `PING`: core
    /// NATS acknowledges nothing, so the `PONG` after each message (the
    /// server has routed it to every subscriber) is its ack, as `PUBLISH`'s
    /// reply is the floor's.
    Nats { addr: SocketAddr, subject: String },
    /// JetStream through async-nats: each publish awaited for its `PubAck`
    /// (the message is in the stream's file store), many in flight.
    JetStream { url: String, subject: String },
}

/// What one channel did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    pub published: u64,
    pub acked: u64,
    pub errors: u64,
    /// Sent but neither acknowledged nor refused within the ack timeout.
    pub unanswered: u64,
    /// Bitset of acknowledged tick indexes.
    pub acked_set: Vec<u64>,
    /// First few errors.
    pub error_samples: Vec<String>,
}

impl PublishOutcome {
    /// Counts an acknowledgement of publisher sequence `seq`, `latency_us`
    /// after its intended send time.
    fn ack(&mut self, live: &LiveStats, latency_us: u64, seq: u64) {
        live.record_ack(latency_us);
        set_bit(&mut self.acked_set, seq);
        self.acked += 1;
    }

    /// Counts an explicit refusal, `latency_us` after its intended send time.
    fn refuse(&mut self, live: &LiveStats, latency_us: u64, sample: String) {
        live.record_refusal(latency_us);
        self.fail(live, sample);
    }

    /// Counts a refused (or failed) publish.
    fn fail(&mut self, live: &LiveStats, sample: String) {
        self.errors += 1;
        LiveStats::bump(&live.publish_errors);
        self.sample_error(sample);
    }

    fn sample_error(&mut self, sample: String) {
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(sample);
        }
    }
}

/// Failure of a channel as a whole (it could not start).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publisher connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("publisher login: {0}")]
    Login(String),
    #[error("http client: {0}")]
    Http(String),
    #[error("NATS: {0}")]
    Nats(String),
}

/// The shape of every message of the run.
#[derive(Debug, Clone)]
pub struct MessageShape {
    pub run_id: u32,
    pub body: String,
    /// `from` of floor payloads and `sender` of HTTP publishes.
    pub sender: String,
}

impl MessageShape {
    pub fn new(run_id: u32, body_bytes: usize) -> Self {
        Self {
            run_id,
            body: "x".repeat(body_bytes),
            sender: format!("lg{run_id:08x}-pub"),
        }
    }

    fn origin(&self, channel: u32, i: u64) -> MessageOrigin {
        MessageOrigin {
            run_id: self.run_id,
            publisher: channel,
            publisher_seq: i,
        }
    }

    /// The TCP `send` of publisher sequence `seq` on channel `channel`.
    fn send_command(&self, channel: u32, seq: u64, sent_at_us: u64) -> ClientCommand {
        ClientCommand::Send {
            body: self.body.clone(),
            message_id: Some(wire::message_id(self.origin(channel, seq))),
            sent_at_us: Some(sent_at_us),
        }
    }

    /// The `POST /v1/service/messages` body of publisher sequence `seq` on channel `channel`.
    fn http_body(&self, channel: u32, seq: u64, sent_at_us: u64) -> serde_json::Value {
        serde_json::json!({
            "sender": self.sender,
            "body": self.body,
            "message_id": wire::message_id(self.origin(channel, seq)),
            "sent_at_us": sent_at_us,
        })
    }

    /// The floor payload for tick `i`: byte for byte the broadcast rtmc would
    /// deliver for it (sequence `i + 1`).
    pub fn floor_payload(&self, i: u64, sent_at_us: u64) -> Vec<u8> {
        ServerFrame::Broadcast(rtmc::protocol::BroadcastFrame {
            seq: i + 1,
            message_id: wire::message_id(self.origin(0, i)),
            from: self.sender.clone(),
            body: self.body.clone(),
            received_at_us: sent_at_us,
            sent_at_us,
        })
        .to_json()
    }
}

/// One channel's part of a phase: its ticks of the schedule (`i ≡ index
/// (mod count)`), what the messages look like, where they are counted, and
/// how long answers may take after the last tick.
#[derive(Clone)]
pub struct ChannelShare {
    /// This channel's index among `count` channels.
    pub index: u32,
    pub count: u32,
    pub schedule: Schedule,
    pub shape: Arc<MessageShape>,
    pub live: Arc<LiveStats>,
    pub ack_timeout: Duration,
    /// Sees every attempt and its answer (the chaos recorder). Attempts
    /// that get no answer before the channel ends are never reported
    /// answered: a recorder keeps them unknown.
    pub observer: SharedPublishObserver,
}

impl ChannelShare {
    /// Tick indexes `i ≡ index (mod count)`, in order.
    fn ticks(&self) -> impl Iterator<Item = u64> {
        my_ticks(self.index, self.count, self.schedule.total)
    }

    /// When waiting for answers stops: the ack timeout after the last tick.
    fn answers_deadline(&self) -> tokio::time::Instant {
        self.schedule.due(self.schedule.total) + self.ack_timeout
    }
}

/// Runs one channel over its share of the schedule, then waits up to the
/// ack timeout for the outstanding answers.
pub async fn publish(
    channel: Channel,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    match channel {
        Channel::Tcp {
            addr,
            user,
            password,
        } => publish_tcp(addr, &user, &password, share).await,
        Channel::Http {
            base_url,
            api_key,
            concurrency,
        } => publish_http(&base_url, &api_key, concurrency, share).await,
        Channel::Redis { addr, channel } => publish_redis(addr, &channel, share).await,
        Channel::Nats { addr, subject } => publish_nats(addr, &subject, share).await,
        Channel::JetStream { url, subject } => publish_jetstream(&url, &subject, share).await,
    }
}

/// Tick indexes of channel `index` of `count`, in order.
fn my_ticks(index: u32, count: u32, total: u64) -> impl Iterator<Item = u64> {
    (u64::from(index)..total).step_by(count.max(1) as usize)
}

async fn connect_nodelay(addr: SocketAddr) -> Result<TcpStream, PublishError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| PublishError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Writes every tick when it is due, open loop: ticks already due go out
/// together, up to [`MAX_BATCH_MESSAGES`] a write. Stops at the end of the
/// ticks or at a failed write; returns how many were written, and the
/// writer, still open.
async fn write_open_loop(
    mut writer: OwnedWriteHalf,
    mut ticks: Peekable<impl Iterator<Item = u64>>,
    schedule: Schedule,
    live: Arc<LiveStats>,
    mut encode: impl FnMut(&mut Vec<u8>, u64),
) -> (u64, OwnedWriteHalf) {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut written = 0u64;
    while let Some(&next) = ticks.peek() {
        tokio::time::sleep_until(schedule.due(next)).await;
        let now = tokio::time::Instant::now();
        out.clear();
        let mut n = 0;
        while let Some(&i) = ticks.peek() {
            if schedule.due(i) > now || n >= MAX_BATCH_MESSAGES {
                break;
            }
            ticks.next();
            encode(&mut out, i);
            n += 1;
        }
        if writer.write_all(&out).await.is_err() {
            break;
        }
        written += n;
        live.published.fetch_add(n, Ordering::Relaxed);
    }
    (written, writer)
}

/// Reads more bytes into `buf`; false at `deadline`, at the end of the
/// stream, or on an error.
async fn read_more(
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, reader.read_buf(buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

async fn publish_tcp(
    addr: SocketAddr,
    user: &str,
    password: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let stream = connect_nodelay(addr).await?;
    let mut conn = rtmc::client::Connection::from_stream(stream, PUBLISHER_MAX_FRAME_BYTES);
    // Publish-only: the publisher's acks never queue behind broadcasts.
    rtmc::client::login_publisher(&mut conn, user, password, Duration::from_secs(10))
        .await
        .map_err(|e| PublishError::Login(e.to_string()))?;
    let (mut reader, writer) = conn.into_inner().into_split();
    let mine = share.ticks().count() as u64;

    let (index, schedule, shape) = (share.index, share.schedule, share.shape.clone());
    let observer = share.observer.clone();
    let write = tokio::spawn(write_open_loop(
        writer,
        share.ticks().peekable(),
        schedule,
        share.live.clone(),
        move |out, i| {
            let cmd = shape.send_command(index, schedule.seq_base + i, schedule.intended_us(i));
            if let (
                Some(o),
                ClientCommand::Send {
                    message_id: Some(id),
                    ..
                },
            ) = (&observer, &cmd)
            {
                o.invoked(index, id);
            }
            wire::put_frame(out, &cmd.to_json());
        },
    ));
    let (mut outcome, answered) = read_acks(&mut reader, &share, mine).await;
    // The write half was kept open until now: closing it earlier would end the session.
    let sent = match write.await {
        Ok((sent, writer)) => {
            drop(writer);
            sent
        }
        Err(_) => 0,
    };
    outcome.published = sent;
    outcome.unanswered = sent.saturating_sub(answered);
    Ok(outcome)
}

/// Reads acks and refusals, matched by message id, until all `mine` are
/// answered or the answers deadline passes; broadcasts are skipped. Returns
/// the outcome so far and how many were answered.
async fn read_acks(
    reader: &mut OwnedReadHalf,
    share: &ChannelShare,
    mine: u64,
) -> (PublishOutcome, u64) {
    let schedule = share.schedule;
    let live = &share.live;
    let mut outcome = PublishOutcome::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut answered = 0u64;
    let end = share.answers_deadline();
    while answered < mine {
        if !read_more(reader, &mut buf, end).await {
            break;
        }
        let now = now_us();
        let used = wire::for_each_frame(&buf, PUBLISHER_MAX_FRAME_BYTES, |p| {
            if wire::is_broadcast(p) {
                return;
            }
            match ServerFrame::parse(p) {
                Ok(ServerFrame::SendAck { message_id }) => {
                    if let Some(obs) = &share.observer {
                        obs.acked(share.index, &message_id);
                    }
                    if let Some(o) = wire::parse_message_id(message_id.as_bytes()) {
                        let i = o.publisher_seq.saturating_sub(schedule.seq_base);
                        let latency_us = now.saturating_sub(schedule.intended_us(i));
                        outcome.ack(live, latency_us, o.publisher_seq);
                        answered += 1;
                    }
                }
                Ok(ServerFrame::Error {
                    code,
                    message,
                    message_id,
                    ..
                }) => {
                    let sample = format!("{code:?}: {message}");
                    if let (Some(obs), Some(id)) = (&share.observer, &message_id) {
                        obs.refused(share.index, id, &error_code_name(code));
                    }
                    let origin = message_id
                        .as_deref()
                        .and_then(|id| wire::parse_message_id(id.as_bytes()));
                    if let Some(o) = origin {
                        let i = o.publisher_seq.saturating_sub(schedule.seq_base);
                        answered += 1;
                        outcome.refuse(live, now.saturating_sub(schedule.intended_us(i)), sample);
                    } else if message_id.is_some() || code == ErrorCode::BrokerUnavailable {
                        answered += 1;
                        outcome.fail(live, sample);
                    } else {
                        outcome.sample_error(sample);
                    }
                }
                _ => {}
            }
        })
        .unwrap_or(buf.len());
        buf.advance(used);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }
    (outcome, answered)
}

async fn publish_http(
    base_url: &str,
    api_key: &str,
    concurrency: usize,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .timeout(share.ack_timeout)
        .build()
        .map_err(|e| PublishError::Http(e.to_string()))?;
    let url = format!("{}/v1/service/messages", base_url.trim_end_matches('/'));
    let schedule = share.schedule;
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let outcome = Arc::new(std::sync::Mutex::new(PublishOutcome::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in share.ticks() {
        tokio::time::sleep_until(schedule.due(i)).await;
        // Waiting for a permit delays the send, never the intended time.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let seq = schedule.seq_base + i;
        let body = share
            .shape
            .http_body(share.index, seq, schedule.intended_us(i));
        let req = client.post(&url).header("x-api-key", api_key).json(&body);
        share.live.published.fetch_add(1, Ordering::Relaxed);
        let intended_us = schedule.intended_us(i);
        let (live, outcome) = (share.live.clone(), outcome.clone());
        let observed = share.observer.clone().map(|o| {
            let id = wire::message_id(share.shape.origin(share.index, seq));
            o.invoked(share.index, &id);
            (o, share.index, id)
        });
        tasks.spawn(async move {
            let answer = post_message(req, seq, intended_us, live, outcome, permit).await;
            if let Some((o, channel, id)) = observed {
                match answer {
                    Some(202) => o.acked(channel, &id),
                    Some(status) => o.refused(channel, &id, &format!("http_{status}")),
                    None => o.unanswered(channel, &id),
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(share.ack_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let mut o = match outcome.lock() {
        Ok(mut o) => std::mem::take(&mut *o),
        Err(_) => PublishOutcome::default(),
    };
    o.published = share.ticks().count() as u64;
    o.unanswered = o.published.saturating_sub(o.acked + o.errors);
    Ok(o)
}

/// Sends one `POST /v1/service/messages` and counts its answer: `202` is the ack.
/// Returns the status, `None` when no answer came.
async fn post_message(
    req: reqwest::RequestBuilder,
    seq: u64,
    intended_us: u64,
    live: Arc<LiveStats>,
    outcome: Arc<std::sync::Mutex<PublishOutcome>>,
    permit: OwnedSemaphorePermit,
) -> Option<u16> {
    let result = req.send().await;
    drop(permit);
    let latency_us = now_us().saturating_sub(intended_us);
    let status = result.as_ref().ok().map(|r| r.status().as_u16());
    let Ok(mut o) = outcome.lock() else {
        return status;
    };
    match result {
        Ok(r) if r.status().as_u16() == 202 => o.ack(&live, latency_us, seq),
        Ok(r) => o.refuse(&live, latency_us, format!("HTTP {}", r.status())),
        Err(e) => o.fail(&live, e.to_string()),
    }
    status
}

/// The wire name of `code` (`broker_unavailable`).
fn error_code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

async fn publish_redis(
    addr: SocketAddr,
    channel: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let stream = connect_nodelay(addr).await?;
    let (mut reader, writer) = stream.into_split();
    let (schedule, shape, live) = (share.schedule, share.shape.clone(), share.live.clone());
    let channel = channel.to_owned();
    // The floor has one publisher: it sends every tick.
    let ticks = (0..schedule.total).peekable();
    let write = tokio::spawn(async move {
        let encode = move |out: &mut Vec<u8>, i: u64| {
            let payload = shape.floor_payload(schedule.seq_base + i, schedule.intended_us(i));
            resp::command(out, &[b"PUBLISH", channel.as_bytes(), &payload]);
        };
        // The write half closes when this task ends, once everything is written.
        write_open_loop(writer, ticks, schedule, live, encode)
            .await
            .0
    });
    let (mut outcome, replies) = read_replies(&mut reader, &share, resp_reply).await;
    outcome.published = write.await.unwrap_or(0);
    outcome.unanswered = outcome.published.saturating_sub(replies);
    Ok(outcome)
}

/// One answer to a pipelined publish; answers come in publish order.
enum Reply<'a> {
    Ack,
    Refused(&'a [u8]),
    /// Not an answer (a push, a greeting).
    Other,
}

/// Reads the answer at an offset of the buffer: the answer and where the
/// next starts, `None` while incomplete.
type NextReply = for<'a> fn(&'a [u8], usize) -> Option<(Reply<'a>, usize)>;

/// Redis: the integer reply to `PUBLISH` (subscribers reached) is the ack.
fn resp_reply(buf: &[u8], at: usize) -> Option<(Reply<'_>, usize)> {
    let (item, next) = resp::next_item(buf, at).ok()??;
    let reply = match item {
        RespItem::Integer(_) => Reply::Ack,
        RespItem::Error(e) => Reply::Refused(e),
        _ => Reply::Other,
    };
    Some((reply, next))
}

/// NATS core: the `PONG` sent after each `PUB` is its ack.
fn nats_reply(buf: &[u8], at: usize) -> Option<(Reply<'_>, usize)> {
    let (op, next) = nats_wire::next_op(buf, at).ok()??;
    let reply = match op {
        NatsOp::Pong => Reply::Ack,
        NatsOp::Err(e) => Reply::Refused(e),
        _ => Reply::Other,
    };
    Some((reply, next))
}

/// Reads the answers to pipelined publishes until one came for every tick
/// or the answers deadline passes; answer `k` belongs to tick `k`. Returns
/// the outcome so far and how many answers came.
async fn read_replies(
    reader: &mut OwnedReadHalf,
    share: &ChannelShare,
    next_reply: NextReply,
) -> (PublishOutcome, u64) {
    let schedule = share.schedule;
    let live = &share.live;
    let mut outcome = PublishOutcome::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut k = 0u64;
    let end = share.answers_deadline();
    while k < schedule.total {
        if !read_more(reader, &mut buf, end).await {
            break;
        }
        let now = now_us();
        let mut at = 0;
        while let Some((reply, next)) = next_reply(&buf, at) {
            at = next;
            match reply {
                Reply::Ack => {
                    let latency_us = now.saturating_sub(schedule.intended_us(k));
                    outcome.ack(live, latency_us, schedule.seq_base + k);
                }
                Reply::Refused(e) => outcome.fail(live, String::from_utf8_lossy(e).into_owned()),
                Reply::Other => continue,
            }
            k += 1;
        }
        buf.advance(at);
    }
    (outcome, k)
}

async fn publish_nats(
    addr: SocketAddr,
    subject: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let stream = connect_nodelay(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    let mut hello = Vec::new();
    nats_wire::connect(&mut hello);
    writer
        .write_all(&hello)
        .await
        .map_err(|source| PublishError::Connect { addr, source })?;
    let (schedule, shape, live) = (share.schedule, share.shape.clone(), share.live.clone());
    let subject = subject.to_owned();
    // One publisher, like the floor's: it sends every tick.
    let ticks = (0..schedule.total).peekable();
    let encode = move |out: &mut Vec<u8>, i: u64| {
        let payload = shape.floor_payload(schedule.seq_base + i, schedule.intended_us(i));
        nats_wire::publish(out, subject.as_bytes(), None, &payload);
        out.extend_from_slice(b"PING\r\n");
    };
    let write = tokio::spawn(write_open_loop(writer, ticks, schedule, live, encode));
    let (mut outcome, replies) = read_replies(&mut reader, &share, nats_reply).await;
    // The write half stays open until the answers are read: the server
    // closes a connection whose client closed its side.
    outcome.published = match write.await {
        Ok((sent, writer)) => {
            drop(writer);
            sent
        }
        Err(_) => 0,
    };
    outcome.unanswered = outcome.published.saturating_sub(replies);
    Ok(outcome)
}

/// JetStream acks awaited at once at most (async-nats's default is 5,000,
/// with publishes waiting for room): never the publisher's limit.
const JETSTREAM_MAX_ACKS_IN_FLIGHT: usize = 1 << 20;

async fn publish_jetstream(
    url: &str,
    subject: &str,
    share: ChannelShare,
) -> Result<PublishOutcome, PublishError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| PublishError::Nats(format!("connect to {url}: {e}")))?;
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .timeout(share.ack_timeout)
        .max_ack_inflight(JETSTREAM_MAX_ACKS_IN_FLIGHT)
        .build(client);
    let (schedule, live) = (share.schedule, share.live.clone());
    let subject = async_nats::Subject::from(subject);
    let mut outcome = PublishOutcome::default();
    let mut acks = tokio::task::JoinSet::new();
    let mut answered = 0u64;
    // One publisher, like the floor's: it sends every tick, each when due.
    for i in 0..schedule.total {
        tokio::time::sleep_until(schedule.due(i)).await;
        let payload = share
            .shape
            .floor_payload(schedule.seq_base + i, schedule.intended_us(i));
        match js.publish(subject.clone(), payload.into()).await {
            Ok(ack) => {
                outcome.published += 1;
                live.published.fetch_add(1, Ordering::Relaxed);
                acks.spawn(async move { (i, ack.await) });
            }
            Err(e) => outcome.fail(&live, e.to_string()),
        }
        while let Some(done) = acks.try_join_next() {
            answered += count_pub_ack(&mut outcome, &share, done);
        }
    }
    let end = share.answers_deadline();
    while let Ok(Some(done)) = tokio::time::timeout_at(end, acks.join_next()).await {
        answered += count_pub_ack(&mut outcome, &share, done);
    }
    outcome.unanswered = outcome.published.saturating_sub(answered);
    Ok(outcome)
}

/// A finished ack task: the tick and what its `PubAck` future gave.
type AwaitedAck = Result<
    (
        u64,
        Result<
            async_nats::jetstream::publish::PublishAck,
            async_nats::jetstream::context::PublishError,
        >,
    ),
    tokio::task::JoinError,
>;

/// Counts one awaited `PubAck` (ack or refusal); 1 when it was an answer,
/// 0 when none came in time.
fn count_pub_ack(outcome: &mut PublishOutcome, share: &ChannelShare, done: AwaitedAck) -> u64 {
    use async_nats::jetstream::context::PublishErrorKind;
    let schedule = share.schedule;
    match done {
        Ok((i, Ok(_))) => {
            let latency_us = now_us().saturating_sub(schedule.intended_us(i));
            outcome.ack(&share.live, latency_us, schedule.seq_base + i);
            1
        }
        Ok((_, Err(e))) if e.kind() == PublishErrorKind::TimedOut => 0,
        Ok((_, Err(e))) => {
            outcome.fail(&share.live, e.to_string());
            1
        }
        Err(e) => {
            outcome.sample_error(e.to_string());
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_come_from_the_start_time_not_from_completions() {
        let s = Schedule {
            rate_per_sec: 200.0,
            start: tokio::time::Instant::now(),
            start_wall_us: 1_000_000,
            total: 1000,
            seq_base: 0,
        };
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(5));
        assert_eq!(s.offset(200), Duration::from_secs(1));
        assert_eq!(s.due(400) - s.start, Duration::from_secs(2));
        assert_eq!(s.intended_us(3), 1_015_000);
        // A publisher that stalled for 1 s owes every tick of that second at once.
        assert_eq!(s.due_by(Duration::from_secs(1)), 201);
        assert_eq!(s.due_by(Duration::from_secs(100)), 1000);
    }

    #[test]
    fn channels_split_the_ticks() {
        let a: Vec<u64> = my_ticks(0, 3, 10).collect();
        let b: Vec<u64> = my_ticks(1, 3, 10).collect();
        let c: Vec<u64> = my_ticks(2, 3, 10).collect();
        assert_eq!(a, [0, 3, 6, 9]);
        assert_eq!(b, [1, 4, 7]);
        assert_eq!(c, [2, 5, 8]);
        let s = Schedule::starting_now(100.0, 2.5);
        assert_eq!(s.total, 250);
    }

    #[test]
    fn floor_payload_is_a_broadcast() {
        let shape = MessageShape::new(7, 16);
        let p = shape.floor_payload(4, 123);
        let f = wire::parse_broadcast(&p).unwrap();
        assert_eq!((f.seq, f.sent_at_us), (5, 123));
        assert_eq!(f.origin.unwrap().publisher_seq, 4);
    }
}
