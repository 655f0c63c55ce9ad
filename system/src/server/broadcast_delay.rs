//! Test-only: a fixed extra delay on every broadcast, so the latency gate
//! can prove it catches a known slowdown (ci/README.md, "Injected delays").
//! Compiled only with the `test-broadcast-delay` feature of `rtmc-system`;
//! without it this file does not exist and `RTMC_TEST_BROADCAST_DELAY_US`
//! is ignored.
//!
//! The stream follower hands each framed entry, stamped with the instant it
//! was read, to a delay line; the line publishes it into the fan-out ring at
//! that instant + N µs, in order. Entries queue while they wait, so the
//! follower keeps reading and throughput is kept; only latency grows, by ≈N.
//! The line is a plain thread with `std::thread::sleep` (nanosleep, tens of
//! µs of slack) rather than a tokio timer, whose 1 ms ticks would turn
//! 500 µs into 1–2 ms.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::fanout::{Broadcast, Fanout};
use crate::stream::Delivery;

/// The variable that sets the delay in microseconds (0 or unset: none).
pub const DELAY_ENV: &str = "RTMC_TEST_BROADCAST_DELAY_US";

/// Reads [`DELAY_ENV`]: `None` when unset or 0, an error when not a number.
pub fn delay_from_env() -> Result<Option<Duration>, std::io::Error> {
    let Some(raw) = std::env::var_os(DELAY_ENV) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    let us: u64 = text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{DELAY_ENV}={text:?} is not a whole number of microseconds"),
        )
    })?;
    Ok((us > 0).then(|| Duration::from_micros(us)))
}

/// The follower's side of the line: entries go in stamped with their read
/// time; a thread publishes each into the fan-out `delay` later. Dropping
/// it ends the thread once the queued entries are out.
pub struct DelayLine {
    tx: mpsc::Sender<(Instant, Delivery)>,
    /// Highest sequence number handed to the line (the ring's head lags it
    /// by the delay, so the follower reads on from here).
    read_head: u64,
}

impl DelayLine {
    /// Starts the line's thread in front of `fanout`.
    pub fn start(fanout: Fanout, delay: Duration) -> std::io::Result<Self> {
        let read_head = fanout.head();
        let (tx, rx) = mpsc::channel::<(Instant, Delivery)>();
        std::thread::Builder::new()
            .name("rtmc-test-broadcast-delay".into())
            .spawn(move || {
                for (read_at, d) in rx {
                    let due = read_at + delay;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    fanout.publish(d);
                }
            })?;
        tracing::warn!(
            delay_us = delay.as_micros() as u64,
            "TEST ONLY: every broadcast is delayed ({DELAY_ENV})"
        );
        Ok(Self { tx, read_head })
    }
}

impl Broadcast for DelayLine {
    fn head(&self) -> u64 {
        self.read_head
    }

    fn publish(&mut self, d: Delivery) {
        self.read_head = d.seq;
        let _ = self.tx.send((Instant::now(), d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Mean time from handing an entry to the line to its arrival on a ring
    /// receiver, over `n` entries spaced 3 ms apart (µs).
    fn mean_added_delay_us(delay_us: u64, n: u64) -> f64 {
        let fanout = Fanout::new(1024, 0);
        let (mut rx, _) = fanout.subscribe();
        let mut line = DelayLine::start(fanout, Duration::from_micros(delay_us)).unwrap();
        let receiver = std::thread::spawn(move || {
            let mut arrivals = Vec::new();
            while arrivals.len() < n as usize {
                match rx.blocking_recv() {
                    Ok(d) => arrivals.push((d.seq, Instant::now())),
                    Err(e) => panic!("ring: {e}"),
                }
            }
            arrivals
        });
        let mut sent = Vec::new();
        for seq in 1..=n {
            sent.push(Instant::now());
            line.publish(Delivery {
                seq,
                frame: Bytes::from_static(b"x"),
            });
            std::thread::sleep(Duration::from_millis(3));
        }
        let arrivals = receiver.join().unwrap();
        let total: f64 = arrivals
            .iter()
            .map(|(seq, at)| (*at - sent[*seq as usize - 1]).as_secs_f64() * 1e6)
            .sum();
        total / n as f64
    }

    #[test]
    fn the_added_delay_is_about_n_even_below_a_millisecond() {
        // The hand-off itself (two thread wake-ups) costs some µs; measure
        // it through a zero-delay line and judge what N adds on top.
        let handoff = mean_added_delay_us(0, 200);
        for delay_us in [500u64, 2000] {
            let added = mean_added_delay_us(delay_us, 200) - handoff;
            eprintln!("delay {delay_us} µs: mean added {added:.0} µs (hand-off {handoff:.0} µs)");
            // A tokio timer would add N rounded up to its 1 ms ticks (about
            // 1.5 ms for 500 µs); nanosleep stays near N.
            let (lo, hi) = (0.7 * delay_us as f64, 1.5 * delay_us as f64);
            assert!(
                (lo..=hi).contains(&added),
                "delay {delay_us} µs: mean added {added:.0} µs, expected {lo:.0}..{hi:.0}"
            );
        }
    }

    #[test]
    fn the_line_keeps_order_and_does_not_serialise() {
        // 1,000 entries at once through a 2 ms line arrive in order, all
        // within a few delays, not 1,000 × 2 ms.
        let fanout = Fanout::new(2048, 0);
        let (mut rx, _) = fanout.subscribe();
        let mut line = DelayLine::start(fanout, Duration::from_millis(2)).unwrap();
        let started = Instant::now();
        for seq in 1..=1000 {
            line.publish(Delivery {
                seq,
                frame: Bytes::from_static(b"x"),
            });
        }
        assert_eq!(line.head(), 1000);
        for seq in 1..=1000 {
            assert_eq!(rx.blocking_recv().unwrap().seq, seq);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_variable_is_parsed_strictly() {
        // One test touches the variable, so no other reads it concurrently.
        std::env::remove_var(DELAY_ENV);
        assert_eq!(delay_from_env().unwrap(), None);
        std::env::set_var(DELAY_ENV, "0");
        assert_eq!(delay_from_env().unwrap(), None);
        std::env::set_var(DELAY_ENV, "2000");
        assert_eq!(delay_from_env().unwrap(), Some(Duration::from_millis(2)));
        std::env::set_var(DELAY_ENV, "2ms");
        let e = delay_from_env().unwrap_err();
        assert!(e.to_string().contains("not a whole number"), "{e}");
        std::env::remove_var(DELAY_ENV);
    }
}
