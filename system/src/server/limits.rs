//! Per-connection rate limits: a token bucket that refills continuously.

use std::time::Instant;

/// Allows `rate_per_sec` events per second on average, bursts up to one
/// second's worth.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        Self {
            rate_per_sec: rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Takes a token if one is available.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    pub fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.rate_per_sec);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10);
        assert_eq!((0..20).filter(|_| b.allow_at(t0)).count(), 10);
        assert!(!b.allow_at(t0));
        assert!(b.allow_at(t0 + Duration::from_millis(100)));
        assert!(!b.allow_at(t0 + Duration::from_millis(100)));
        assert_eq!(
            (0..20)
                .filter(|_| b.allow_at(t0 + Duration::from_secs(5)))
                .count(),
            10
        );
    }
}
