//! The publishing side: an open-loop schedule at a fixed aggregate rate
//! (tick `i` is due at `start + i / rate`, never derived from when the
//! previous send completed), over pipelined TCP `send`s, HTTP
//! `POST /v1/messages`, or Redis `PUBLISH` for the floor. Every message
//! carries its intended send time, so latency is corrected for coordinated
//! omission, and a publisher sequence in its message id.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use rtmc::protocol::{ClientCommand, ErrorCode, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::clients::{now_us, set_bit};
use crate::live::LiveStats;
use crate::resp::{self, RespItem};
use crate::wire::{self, MessageOrigin};

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

    /// The floor payload for tick `i`: byte for byte the broadcast rtmc would
    /// deliver for it (sequence `i + 1`).
    pub fn floor_payload(&self, i: u64, sent_at_us: u64) -> Vec<u8> {
        ServerFrame::Broadcast(rtmc::protocol::BroadcastFrame {
            seq: i + 1,
            message_id: wire::message_id(self.origin(0, i)),
            from: self.sender.clone(),
            body: self.body.clone(),
            sent_at_us,
        })
        .to_json()
    }
}

/// Runs one channel over ticks `i ≡ index (mod count)` of the schedule, then
/// waits up to `ack_timeout` for the outstanding answers.
pub async fn publish(
    channel: Channel,
    index: u32,
    count: u32,
    schedule: Schedule,
    shape: Arc<MessageShape>,
    live: Arc<LiveStats>,
    ack_timeout: Duration,
) -> Result<PublishOutcome, PublishError> {
    match channel {
        Channel::Tcp {
            addr,
            user,
            password,
        } => {
            publish_tcp(
                addr,
                &user,
                &password,
                index,
                count,
                schedule,
                shape,
                live,
                ack_timeout,
            )
            .await
        }
        Channel::Http {
            base_url,
            api_key,
            concurrency,
        } => {
            publish_http(
                &base_url,
                &api_key,
                concurrency,
                index,
                count,
                schedule,
                shape,
                live,
                ack_timeout,
            )
            .await
        }
        Channel::Redis { addr, channel } => {
            publish_redis(addr, &channel, schedule, shape, live, ack_timeout).await
        }
    }
}

/// Tick indexes of channel `index` of `count`, in order.
fn my_ticks(index: u32, count: u32, total: u64) -> impl Iterator<Item = u64> {
    (u64::from(index)..total).step_by(count.max(1) as usize)
}

#[allow(clippy::too_many_arguments)]
async fn publish_tcp(
    addr: SocketAddr,
    user: &str,
    password: &str,
    index: u32,
    count: u32,
    schedule: Schedule,
    shape: Arc<MessageShape>,
    live: Arc<LiveStats>,
    ack_timeout: Duration,
) -> Result<PublishOutcome, PublishError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| PublishError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let mut conn = rtmc::client::Connection::from_stream(stream, usize::MAX >> 1);
    // Publish-only: the publisher's acks never queue behind broadcasts.
    rtmc::client::login_publisher(&mut conn, user, password, Duration::from_secs(10))
        .await
        .map_err(|e| PublishError::Login(e.to_string()))?;
    let (mut reader, mut writer) = conn.into_inner().into_split();
    let mine: u64 = my_ticks(index, count, schedule.total).count() as u64;

    // Writer: open loop. Every due tick is written, coalesced when behind.
    let writer_shape = shape.clone();
    let writer_live = live.clone();
    let write = tokio::spawn(async move {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut ticks = my_ticks(index, count, schedule.total).peekable();
        let mut sent = 0u64;
        while let Some(&next) = ticks.peek() {
            tokio::time::sleep_until(schedule.due(next)).await;
            let now = tokio::time::Instant::now();
            out.clear();
            let mut n = 0;
            while let Some(&i) = ticks.peek() {
                if schedule.due(i) > now || n >= 512 {
                    break;
                }
                ticks.next();
                let cmd = ClientCommand::Send {
                    body: writer_shape.body.clone(),
                    message_id: Some(wire::message_id(
                        writer_shape.origin(index, schedule.seq_base + i),
                    )),
                    sent_at_us: Some(schedule.intended_us(i)),
                };
                wire::put_frame(&mut out, &cmd.to_json());
                n += 1;
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
            sent += n;
            writer_live.published.fetch_add(n, Ordering::Relaxed);
        }
        (sent, writer)
    });

    // Reader: acks and errors, matched by message id; broadcasts are drained.
    let mut outcome = PublishOutcome::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut answered = 0u64;
    let end = schedule.due(schedule.total) + ack_timeout;
    while answered < mine {
        let read = tokio::time::timeout_at(end, reader.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        let now = now_us();
        let used = wire::for_each_frame(&buf, usize::MAX >> 1, |p| {
            if wire::is_broadcast(p) {
                return;
            }
            match ServerFrame::parse(p) {
                Ok(ServerFrame::SendAck { message_id }) => {
                    if let Some(o) = wire::parse_message_id(message_id.as_bytes()) {
                        let i = o.publisher_seq.saturating_sub(schedule.seq_base);
                        live.record_ack(now.saturating_sub(schedule.intended_us(i)));
                        set_bit(&mut outcome.acked_set, o.publisher_seq);
                        outcome.acked += 1;
                        answered += 1;
                    }
                }
                Ok(ServerFrame::Error {
                    code,
                    message,
                    message_id,
                }) => {
                    if message_id.is_some() || code == ErrorCode::BrokerUnavailable {
                        answered += 1;
                        outcome.errors += 1;
                        LiveStats::bump(&live.publish_errors);
                    }
                    if outcome.error_samples.len() < 5 {
                        outcome.error_samples.push(format!("{code:?}: {message}"));
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

#[allow(clippy::too_many_arguments)]
async fn publish_http(
    base_url: &str,
    api_key: &str,
    concurrency: usize,
    index: u32,
    count: u32,
    schedule: Schedule,
    shape: Arc<MessageShape>,
    live: Arc<LiveStats>,
    ack_timeout: Duration,
) -> Result<PublishOutcome, PublishError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .timeout(ack_timeout)
        .build()
        .map_err(|e| PublishError::Http(e.to_string()))?;
    let url = format!("{}/v1/messages", base_url.trim_end_matches('/'));
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let outcome = Arc::new(std::sync::Mutex::new(PublishOutcome::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in my_ticks(index, count, schedule.total) {
        tokio::time::sleep_until(schedule.due(i)).await;
        // Waiting for a permit delays the send, never the intended time.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let body = serde_json::json!({
            "sender": shape.sender,
            "body": shape.body,
            "message_id": wire::message_id(shape.origin(index, schedule.seq_base + i)),
            "sent_at_us": schedule.intended_us(i),
        });
        let req = client.post(&url).header("x-api-key", api_key).json(&body);
        let (live, outcome) = (live.clone(), outcome.clone());
        live.published.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let result = req.send().await;
            let latency = now_us().saturating_sub(schedule.intended_us(i));
            let Ok(mut o) = outcome.lock() else { return };
            match result {
                Ok(r) if r.status().as_u16() == 202 => {
                    live.record_ack(latency);
                    set_bit(&mut o.acked_set, schedule.seq_base + i);
                    o.acked += 1;
                }
                Ok(r) => {
                    LiveStats::bump(&live.publish_errors);
                    o.errors += 1;
                    if o.error_samples.len() < 5 {
                        o.error_samples.push(format!("HTTP {}", r.status()));
                    }
                }
                Err(e) => {
                    LiveStats::bump(&live.publish_errors);
                    o.errors += 1;
                    if o.error_samples.len() < 5 {
                        o.error_samples.push(e.to_string());
                    }
                }
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(ack_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let mut o = match outcome.lock() {
        Ok(mut o) => std::mem::take(&mut *o),
        Err(_) => PublishOutcome::default(),
    };
    o.published = my_ticks(index, count, schedule.total).count() as u64;
    o.unanswered = o.published.saturating_sub(o.acked + o.errors);
    Ok(o)
}

async fn publish_redis(
    addr: SocketAddr,
    channel: &str,
    schedule: Schedule,
    shape: Arc<MessageShape>,
    live: Arc<LiveStats>,
    ack_timeout: Duration,
) -> Result<PublishOutcome, PublishError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| PublishError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let channel = channel.to_owned();
    let writer_live = live.clone();
    let write = tokio::spawn(async move {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut i = 0u64;
        while i < schedule.total {
            tokio::time::sleep_until(schedule.due(i)).await;
            let now = tokio::time::Instant::now();
            out.clear();
            let mut n = 0;
            while i < schedule.total && schedule.due(i) <= now && n < 512 {
                let payload = shape.floor_payload(schedule.seq_base + i, schedule.intended_us(i));
                resp::command(&mut out, &[b"PUBLISH", channel.as_bytes(), &payload]);
                i += 1;
                n += 1;
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
            writer_live.published.fetch_add(n, Ordering::Relaxed);
        }
        i
    });
    // Redis answers in order: reply k belongs to tick k.
    let mut outcome = PublishOutcome::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut k = 0u64;
    let end = schedule.due(schedule.total) + ack_timeout;
    while k < schedule.total {
        match tokio::time::timeout_at(end, reader.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        let now = now_us();
        let mut at = 0;
        while let Ok(Some((item, next))) = resp::next_item(&buf, at) {
            match item {
                RespItem::Integer(_) => {
                    live.record_ack(now.saturating_sub(schedule.intended_us(k)));
                    set_bit(&mut outcome.acked_set, schedule.seq_base + k);
                    outcome.acked += 1;
                }
                RespItem::Error(e) => {
                    outcome.errors += 1;
                    LiveStats::bump(&live.publish_errors);
                    if outcome.error_samples.len() < 5 {
                        outcome
                            .error_samples
                            .push(String::from_utf8_lossy(e).into_owned());
                    }
                }
                _ => {
                    at = next;
                    continue;
                }
            }
            k += 1;
            at = next;
        }
        buf.advance(at);
    }
    outcome.published = write.await.unwrap_or(0);
    outcome.unanswered = outcome.published.saturating_sub(k);
    Ok(outcome)
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
