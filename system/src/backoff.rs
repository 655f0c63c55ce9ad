//! Exponential back-off between retries that stops waiting on shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubling delays from `initial` up to `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay the next `wait` will sleep.
    pub fn next_delay(&self) -> Duration {
        self.next
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Sleeps the current delay and doubles it. Returns false (at once) when
    /// `shutdown` is cancelled, so callers can stop retrying.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_up_to_the_cap_and_resets() {
        let stop = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
        assert!(b.wait(&stop).await);
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert!(b.wait(&stop).await);
        assert_eq!(b.next_delay(), Duration::from_millis(300));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        stop.cancel();
        assert!(!b.wait(&stop).await);
    }
}
