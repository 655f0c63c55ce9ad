//! Follows the Redis message stream with a blocking read and hands each new
//! message, framed once, to every session through one broadcast ring. The
//! ring's capacity is each session's outbound queue bound: a session that
//! falls further behind is lagged and cut off as a slow consumer. Idle
//! sessions are written by the ring's pumps directly (`direct`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::direct::{Direct, DirectWrite, LaneHandle};
use crate::backoff::Backoff;
use crate::stream::{self, Delivery, RedisKeys};

/// The node's view of the stream: a ring of recent deliveries and the last
/// sequence number put into it.
#[derive(Clone)]
pub struct Fanout {
    tx: broadcast::Sender<Delivery>,
    /// Highest sequence number sent into the ring (stored before sending).
    head: Arc<AtomicU64>,
    /// Writes to idle sessions without waking them (once started).
    direct: Arc<Direct>,
}

impl Fanout {
    pub fn new(ring_capacity: usize, start_seq: u64) -> Self {
        let (tx, _) = broadcast::channel(ring_capacity.max(16));
        Self {
            tx,
            head: Arc::new(AtomicU64::new(start_seq)),
            direct: Arc::default(),
        }
    }

    /// Starts direct delivery with `pumps` pump tasks (0: one per runtime
    /// worker), until `stop`. Without it every session's writer task is
    /// woken for every message.
    pub fn start_direct(&self, pumps: usize, tasks: &TaskTracker, stop: &CancellationToken) {
        let pumps = match pumps {
            0 => tokio::runtime::Handle::current().metrics().num_workers(),
            n => n,
        };
        self.direct.start(pumps, tasks, stop);
    }

    /// A lane for a session's writer to park in, or `None` when direct
    /// delivery is not running.
    pub fn lane<W: DirectWrite>(&self) -> Option<LaneHandle<W>> {
        self.direct.register()
    }

    /// Sessions registered for direct delivery (parked or not).
    pub fn direct_lanes(&self) -> usize {
        self.direct.lanes()
    }

    /// Subscribes, then reads the head: every message after the returned
    /// sequence number will arrive on the receiver (some at or before it may
    /// too, and are to be skipped).
    pub fn subscribe(&self) -> (broadcast::Receiver<Delivery>, u64) {
        let rx = self.tx.subscribe();
        (rx, self.head.load(Ordering::SeqCst))
    }

    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Puts one framed entry into the ring (the follower's step; public so
    /// the benches can drive the ring without Redis).
    pub fn publish(&self, d: Delivery) {
        self.head.store(d.seq, Ordering::SeqCst);
        let _ = self.tx.send(d);
        self.direct.notify();
    }
}

/// Where the follower puts what it read: the ring itself, or (test-only,
/// feature `test-broadcast-delay`) a delay line in front of it.
pub trait Broadcast {
    /// The sequence number the next read starts after.
    fn head(&self) -> u64;
    /// Hands one framed entry on.
    fn publish(&mut self, d: Delivery);
}

impl Broadcast for Fanout {
    fn head(&self) -> u64 {
        Fanout::head(self)
    }

    fn publish(&mut self, d: Delivery) {
        Fanout::publish(self, d)
    }
}

/// How many entries one XREAD returns at most.
const READ_BATCH: usize = 1024;
/// XREAD BLOCK bound; only lets the loop notice shutdown, data wakes it at once.
const BLOCK_MS: u64 = 1_000;

/// Runs until `shutdown`: reads the stream after the fan-out's head and
/// publishes each entry. Redis errors are retried with back-off.
pub async fn follow(
    redis_url: String,
    keys: RedisKeys,
    mut fanout: impl Broadcast,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    let mut conn = None;
    let deliveries = metrics::counter!("rtmc_stream_entries_read_total");
    while !shutdown.is_cancelled() {
        let Some(c) = connected(&mut conn, &redis_url, &mut backoff, &shutdown, "stream").await
        else {
            break;
        };
        let after = fanout.head();
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = stream::read_after(c, &keys, after, BLOCK_MS, READ_BATCH) => r,
        };
        match read {
            Ok(entries) => {
                backoff.reset();
                deliveries.increment(entries.len() as u64);
                record_lag(entries.last());
                for e in entries {
                    if e.seq <= fanout.head() {
                        continue;
                    }
                    fanout.publish(e.framed());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stream follower: read failed");
                conn = None;
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}

/// A follower's blocking Redis connection, opened again (with back-off)
/// when there is none; `None` once `shutdown` ended the wait. `who` names
/// the follower in the log.
pub(super) async fn connected<'c>(
    conn: &'c mut Option<redis::aio::MultiplexedConnection>,
    redis_url: &str,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
    who: &str,
) -> Option<&'c mut redis::aio::MultiplexedConnection> {
    while conn.is_none() {
        match stream::blocking_connection(redis_url).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "{who} follower: redis connect failed");
                if !backoff.wait(shutdown).await {
                    return None;
                }
            }
        }
    }
    conn.as_mut()
}

/// Records how long after a server received it the newest entry of a read
/// is fanned out (one parse per read, not per entry). Only the servers' own
/// `received_at_us` counts: the sender's `sent_at_us` is whatever it
/// claimed, and an entry without a receive time is not measured.
fn record_lag(newest: Option<&stream::StreamEntry>) {
    #[derive(serde::Deserialize)]
    struct ReceivedAt {
        #[serde(default)]
        received_at_us: u64,
    }
    let Some(e) = newest else { return };
    if let Ok(ReceivedAt { received_at_us }) = serde_json::from_slice(&e.payload) {
        if received_at_us == 0 {
            return;
        }
        let lag_us = crate::protocol::now_us().saturating_sub(received_at_us);
        metrics::histogram!("rtmc_fanout_lag_seconds").record(lag_us as f64 / 1e6);
    }
}
