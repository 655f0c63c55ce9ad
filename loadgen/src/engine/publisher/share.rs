//! One channel's part of a phase: the open-loop schedule (tick `i` is due at
//! `start + i / rate`, never derived from when the previous send completed),
//! the shape of every message (its intended send time and a publisher
//! sequence in its message id), the channel's ticks, and the outcome it counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtmc::protocol::{ClientCommand, ServerFrame};
use tokio_util::sync::CancellationToken;

use crate::engine::accounting::set_bit;
use crate::engine::live::LiveStats;
use crate::measure::observe::SharedPublishObserver;
use crate::wire::rtmc_frames::{self, MessageOrigin};

/// Error messages kept as samples for the report, per channel.
pub(super) const ERROR_SAMPLES: usize = 5;

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
    pub(super) fn ack(&mut self, live: &LiveStats, latency_us: u64, seq: u64) {
        live.record_ack(latency_us);
        set_bit(&mut self.acked_set, seq);
        self.acked += 1;
    }

    /// Counts an explicit refusal, `latency_us` after its intended send time.
    pub(super) fn refuse(&mut self, live: &LiveStats, latency_us: u64, sample: String) {
        live.record_refusal(latency_us);
        self.fail(live, sample);
    }

    /// Counts a refused (or failed) publish.
    pub(super) fn fail(&mut self, live: &LiveStats, sample: String) {
        self.errors += 1;
        LiveStats::bump(&live.publish_errors);
        self.sample_error(sample);
    }

    pub(super) fn sample_error(&mut self, sample: String) {
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

    pub(super) fn origin(&self, channel: u32, i: u64) -> MessageOrigin {
        MessageOrigin {
            run_id: self.run_id,
            publisher: channel,
            publisher_seq: i,
        }
    }

    /// The TCP `send` of publisher sequence `seq` on channel `channel`.
    pub(super) fn send_command(&self, channel: u32, seq: u64, sent_at_us: u64) -> ClientCommand {
        ClientCommand::Send {
            room: None,
            to: None,
            body: self.body.clone(),
            message_id: Some(rtmc_frames::message_id(self.origin(channel, seq))),
            sent_at_us: Some(sent_at_us),
        }
    }

    /// The `POST /v1/service/messages` body of publisher sequence `seq` on channel `channel`.
    pub(super) fn http_body(&self, channel: u32, seq: u64, sent_at_us: u64) -> serde_json::Value {
        serde_json::json!({
            "sender": self.sender,
            "body": self.body,
            "message_id": rtmc_frames::message_id(self.origin(channel, seq)),
            "sent_at_us": sent_at_us,
        })
    }

    /// The floor payload for tick `i`: byte for byte the broadcast rtmc would
    /// deliver for it (sequence `i + 1`).
    pub fn floor_payload(&self, i: u64, sent_at_us: u64) -> Vec<u8> {
        ServerFrame::Broadcast(rtmc::protocol::BroadcastFrame {
            seq: i + 1,
            message_id: rtmc_frames::message_id(self.origin(0, i)),
            from: self.sender.clone(),
            body: self.body.clone(),
            received_at_us: sent_at_us,
            sent_at_us,
            room: None,
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
    /// Ends publishing before the schedule does (opt-in; the chaos suites
    /// publish until a fault is repaired). Honoured by the rtmc channels
    /// (TCP and HTTP); the others run their whole schedule.
    pub stop: Option<CancellationToken>,
}

/// How a pipelining channel that honours a stop signal sees it: the signal,
/// and how many publishes the channel has written so far (so that its
/// reader knows how many answers are still owed once it fired).
#[derive(Clone)]
pub(super) struct Stopping {
    pub token: CancellationToken,
    pub written: Arc<AtomicU64>,
}

impl Stopping {
    pub(super) fn new(token: CancellationToken) -> Self {
        Self {
            token,
            written: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

impl ChannelShare {
    /// Sleeps until tick `i` is due: true then, false as soon as the stop
    /// signal (if any) fires first. Without a stop signal this is the plain
    /// open-loop wait.
    pub(super) async fn until_due(&self, i: u64) -> bool {
        let due = self.schedule.due(i);
        match &self.stop {
            None => {
                tokio::time::sleep_until(due).await;
                true
            }
            Some(stop) => tokio::select! {
                biased;
                _ = stop.cancelled() => false,
                _ = tokio::time::sleep_until(due) => true,
            },
        }
    }

    /// Tick indexes `i ≡ index (mod count)`, in order.
    pub(super) fn ticks(&self) -> impl Iterator<Item = u64> {
        my_ticks(self.index, self.count, self.schedule.total)
    }

    /// When waiting for answers stops: the ack timeout after the last tick.
    pub(super) fn answers_deadline(&self) -> tokio::time::Instant {
        self.schedule.due(self.schedule.total) + self.ack_timeout
    }
}

/// Tick indexes of channel `index` of `count`, in order.
pub(super) fn my_ticks(index: u32, count: u32, total: u64) -> impl Iterator<Item = u64> {
    (u64::from(index)..total).step_by(count.max(1) as usize)
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
        let f = rtmc_frames::parse_broadcast(&p).unwrap();
        assert_eq!((f.seq, f.sent_at_us), (5, 123));
        assert_eq!(f.origin.unwrap().publisher_seq, 4);
    }
}
