//! Counters and interval histograms shared by every client and publisher task
//! of a phase, read once a second for the live line and the interval log.
//! Latency is recorded into a few mutex-guarded shards (one lock per read
//! batch): a histogram per receiver would cost ~200 KiB each, 2 GiB at 10k.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::measure::histogram::{merge_into, new_histogram, LatencyHistogram};

/// Number of delivery-latency shards; receivers pick one by index.
const SHARDS: usize = 64;

/// Live state of one measured phase.
pub struct LiveStats {
    /// Publish→receive latency of the current interval, sharded.
    delivery_shards: Vec<Mutex<LatencyHistogram>>,
    /// Publish→ack latency of the current interval.
    ack: Mutex<LatencyHistogram>,
    /// Publish→refusal latencies (an explicit `error`/non-202 answer).
    refusal: Mutex<LatencyHistogram>,
    /// Messages received by all receivers.
    pub deliveries: AtomicU64,
    /// Messages handed to the transport by publishers.
    pub published: AtomicU64,
    /// Messages the server acknowledged.
    pub acked: AtomicU64,
    /// Publishes answered with an error (or a failed request).
    pub publish_errors: AtomicU64,
    /// Receivers logged in and reading.
    pub connected: AtomicU64,
    pub connect_errors: AtomicU64,
    pub login_errors: AtomicU64,
    /// Receivers the server disconnected (slow consumer, shutdown, reset…).
    pub disconnects: AtomicU64,
    /// Of those, the ones cut off with `slow_consumer`.
    pub slow_consumer_disconnects: AtomicU64,
    /// Frames loadgen could not parse.
    pub bad_frames: AtomicU64,
    /// Wall time of the latest delivery batch, µs since the epoch.
    pub last_delivery_us: AtomicU64,
    /// This process's wall clock minus the run's clock, µs: 0 in one
    /// process; in a run over several agents, the skew the coordinator
    /// measured, so that every latency is taken on one clock.
    clock_offset_us: AtomicI64,
}

impl Default for LiveStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveStats {
    pub fn new() -> Self {
        Self {
            delivery_shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            ack: Mutex::new(new_histogram()),
            refusal: Mutex::new(new_histogram()),
            deliveries: AtomicU64::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            login_errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            slow_consumer_disconnects: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
            clock_offset_us: AtomicI64::new(0),
        }
    }

    /// Sets how far this process's wall clock is ahead of the run's (µs).
    pub fn set_clock_offset_us(&self, offset_us: i64) {
        self.clock_offset_us.store(offset_us, Ordering::Relaxed);
    }

    /// Now on the run's clock, µs since the epoch: the wall clock corrected
    /// by the offset the coordinator measured (the wall clock itself in one
    /// process). Receive and ack times are read on it, as the publishers'
    /// `sent_at_us` stamps are.
    pub fn run_clock_us(&self) -> u64 {
        let offset = self.clock_offset_us.load(Ordering::Relaxed);
        rtmc::protocol::now_us().saturating_add_signed(-offset)
    }

    /// Records a batch of delivery latencies for receiver `client`, received at `now_us`.
    pub fn record_deliveries(&self, client: usize, latencies_us: &[u64], now_us: u64) {
        if latencies_us.is_empty() {
            return;
        }
        self.last_delivery_us.fetch_max(now_us, Ordering::Relaxed);
        if let Ok(mut h) = self.delivery_shards[client % SHARDS].lock() {
            for &us in latencies_us {
                crate::measure::histogram::record_us(&mut h, us);
            }
        }
        self.deliveries
            .fetch_add(latencies_us.len() as u64, Ordering::Relaxed);
    }

    /// Records one publish→ack latency.
    pub fn record_ack(&self, latency_us: u64) {
        if let Ok(mut h) = self.ack.lock() {
            crate::measure::histogram::record_us(&mut h, latency_us);
        }
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one publish→refusal latency.
    pub fn record_refusal(&self, latency_us: u64) {
        if let Ok(mut h) = self.refusal.lock() {
            crate::measure::histogram::record_us(&mut h, latency_us);
        }
    }

    /// Takes the refusal latencies recorded since the last call.
    pub fn take_refusals(&self) -> LatencyHistogram {
        take(&self.refusal)
    }

    /// Takes the delivery and ack histograms of the interval that just ended.
    pub fn take_interval(&self) -> (LatencyHistogram, LatencyHistogram) {
        let mut delivery = new_histogram();
        for shard in &self.delivery_shards {
            if let Ok(mut h) = shard.lock() {
                merge_into(&mut delivery, &h);
                h.reset();
            }
        }
        (delivery, take(&self.ack))
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The histogram's contents, leaving it empty.
fn take(h: &Mutex<LatencyHistogram>) -> LatencyHistogram {
    match h.lock() {
        Ok(mut h) => {
            let out = h.clone();
            h.reset();
            out
        }
        Err(_) => new_histogram(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_clock_is_the_wall_clock_less_the_measured_offset() {
        let live = LiveStats::new();
        let wall = rtmc::protocol::now_us();
        assert!(live.run_clock_us().abs_diff(wall) < 1_000_000);
        // This process's clock runs 2 s ahead of the coordinator's.
        live.set_clock_offset_us(2_000_000);
        let behind = rtmc::protocol::now_us() - live.run_clock_us();
        assert!((1_900_000..=2_100_000).contains(&behind), "{behind}");
        // …or 2 s behind it.
        live.set_clock_offset_us(-2_000_000);
        let ahead = live.run_clock_us() - rtmc::protocol::now_us();
        assert!((1_900_000..=2_100_000).contains(&ahead), "{ahead}");
    }
}
