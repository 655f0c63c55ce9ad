//! Test-only: extra CPU work in the fan-out, about N% of what the server
//! spends per delivery, so the latency gate can prove it catches a CPU cost
//! regression (ci/README.md, "Injected regressions"). Compiled only with the
//! `test-fanout-cpu` feature of `rtmc-system`; without it this file does not
//! exist and `RTMC_TEST_FANOUT_CPU_PCT` is ignored.
//!
//! The work calibrates itself, since the server's own cost per delivery
//! depends on the machine and the load: every [`WINDOW`] it reads the
//! process's CPU time (`/proc/self/stat`) and sets the busy time per
//! fanned-out entry so that it is N% of the server's own CPU per entry. The
//! work is spun entry by entry where the follower hands entries to the ring
//! (tens of µs each at the gate's load), so it adds CPU per delivery and
//! little latency.

use std::time::{Duration, Instant};

use super::fanout::Broadcast;
use crate::stream::Delivery;

/// The variable that sets the extra CPU in percent (0 or unset: none).
pub const CPU_ENV: &str = "RTMC_TEST_FANOUT_CPU_PCT";

/// How often the cost per entry is re-estimated.
pub const WINDOW: Duration = Duration::from_millis(250);

/// Linux's clock ticks per second for `/proc/*/stat` (USER_HZ, 100 on every
/// architecture rtmc runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// Reads [`CPU_ENV`]: `None` when unset or 0, an error when not a number.
pub fn pct_from_env() -> Result<Option<u32>, std::io::Error> {
    let Some(raw) = std::env::var_os(CPU_ENV) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    let pct: u32 = text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{CPU_ENV}={text:?} is not a whole number of percent"),
        )
    })?;
    Ok((pct > 0).then_some(pct))
}

/// The process's user + system CPU time so far, `None` where unreadable.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at
    // field 3; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / TICKS_PER_SEC,
    ))
}

/// Spins for `d` of wall time doing arithmetic the optimiser cannot remove.
/// (The thread's own CPU clock is not in std, and `/proc/thread-self/schedstat`
/// is only updated at scheduler ticks; the spins here are tens of µs, far
/// below a time slice, so on the gate's machine they are CPU time.)
pub fn spin(d: Duration) {
    let start = Instant::now();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while start.elapsed() < d {
        for _ in 0..64 {
            x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(31));
        }
    }
    std::hint::black_box(x);
}

/// A [`Broadcast`] that hands entries on to `inner` and spins N% of the
/// server's own CPU per entry after each.
pub struct CpuBurner<B> {
    inner: B,
    pct: u32,
    /// Busy time per entry, from the last window (zero in the first).
    per_entry: Duration,
    window_start: Instant,
    /// Process CPU at the window's start.
    cpu_at_start: Option<Duration>,
    /// Entries handed on in this window.
    entries: u64,
}

impl<B: Broadcast> CpuBurner<B> {
    pub fn new(inner: B, pct: u32) -> Self {
        Self {
            inner,
            pct,
            per_entry: Duration::ZERO,
            window_start: Instant::now(),
            cpu_at_start: process_cpu(),
            entries: 0,
        }
    }

    /// Ends the window when it is due. Its CPU per entry is the server's
    /// own cost plus the busy work: total = (1 + p)·own once the work is at
    /// its target, so the next busy time per entry is p·total/(1 + p). From
    /// zero this converges (each window closes the gap by a factor p/(1+p)).
    fn recalibrate(&mut self) {
        if self.window_start.elapsed() < WINDOW {
            return;
        }
        let now = process_cpu();
        if let (Some(start), Some(end)) = (self.cpu_at_start, now) {
            if self.entries > 0 {
                let total_per_entry = end.saturating_sub(start).as_secs_f64() / self.entries as f64;
                let p = f64::from(self.pct) / 100.0;
                self.per_entry = Duration::from_secs_f64(p * total_per_entry / (1.0 + p));
            }
        }
        self.window_start = Instant::now();
        self.cpu_at_start = now;
        self.entries = 0;
    }
}

impl<B: Broadcast> Broadcast for CpuBurner<B> {
    fn head(&self) -> u64 {
        self.inner.head()
    }

    fn publish(&mut self, d: Delivery) {
        self.inner.publish(d);
        self.recalibrate();
        if !self.per_entry.is_zero() {
            spin(self.per_entry);
        }
        self.entries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_grows_with_spinning() {
        let before = process_cpu().expect("/proc/self/stat is readable");
        spin(Duration::from_millis(60));
        let after = process_cpu().expect("/proc/self/stat is readable");
        assert!(after > before, "{before:?} -> {after:?}");
    }

    #[test]
    fn a_value_that_is_not_a_number_is_refused() {
        // Only this test sets the variable.
        std::env::set_var(CPU_ENV, "five");
        let err = pct_from_env().unwrap_err();
        std::env::set_var(CPU_ENV, "0");
        assert_eq!(pct_from_env().unwrap(), None);
        std::env::set_var(CPU_ENV, "5");
        assert_eq!(pct_from_env().unwrap(), Some(5));
        std::env::remove_var(CPU_ENV);
        assert!(err.to_string().contains("not a whole number"), "{err}");
    }

    /// Stands in for the ring; costs a fixed 200 µs of CPU per entry.
    struct Costly(u64);

    impl Broadcast for Costly {
        fn head(&self) -> u64 {
            self.0
        }
        fn publish(&mut self, d: Delivery) {
            self.0 = d.seq;
            spin(Duration::from_micros(200));
        }
    }

    #[test]
    fn the_busy_time_per_entry_is_about_n_percent_of_the_own_cost() {
        let mut b = CpuBurner::new(Costly(0), 50);
        let cpu_before = process_cpu().expect("/proc/self/stat is readable");
        let start = Instant::now();
        let mut seq = 0;
        while start.elapsed() < WINDOW * 4 {
            seq += 1;
            b.publish(Delivery {
                seq,
                frame: bytes::Bytes::new(),
            });
        }
        // The process's CPU per entry over the run, busy work included. At
        // 50% the work converges to p/(1+p) = 1/3 of it (the process clock
        // ticks at 10 ms and the box is shared: a wide band, but no work or
        // all of the cost would fail).
        let cpu = process_cpu().unwrap().saturating_sub(cpu_before);
        let per_entry_cpu = cpu.as_secs_f64() / seq as f64;
        let ratio = b.per_entry.as_secs_f64() / per_entry_cpu;
        assert!(
            (0.1..=0.8).contains(&ratio),
            "busy {:?} per entry against {per_entry_cpu:e} s of CPU per entry",
            b.per_entry
        );
    }
}
