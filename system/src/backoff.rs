//! Exponential back-off between retries that stops waiting on shutdown: the
//! one retry helper of the crate (stream follower, consumer, sync worker,
//! client reconnects).

use std::future::Future;
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

    /// The current delay; the next one is doubled (up to `max`).
    fn advance(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Sleeps the current delay and doubles it, for a caller that has no
    /// shutdown signal (a client reconnecting).
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }

    /// Sleeps the current delay and doubles it. Returns false (at once) when
    /// `shutdown` is cancelled, so callers can stop retrying.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.advance();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Runs `attempt` until it succeeds, waiting the back-off between
    /// failures. `on_error` sees each failure with the delay before the next
    /// attempt. `None` when `shutdown` came first: a failure after shutdown
    /// is not retried, and a wait in progress ends at once.
    ///
    /// `attempt` is a closure returning a future (not an `async` closure:
    /// those do not yet prove their futures `Send`, which spawned
    /// components need).
    pub async fn retry<T, E, F>(
        &mut self,
        shutdown: &CancellationToken,
        mut attempt: impl FnMut() -> F,
        mut on_error: impl FnMut(&E, Duration),
    ) -> Option<T>
    where
        F: Future<Output = Result<T, E>>,
    {
        loop {
            match attempt().await {
                Ok(t) => return Some(t),
                Err(e) => on_error(&e, self.next_delay()),
            }
            if !self.wait(shutdown).await {
                return None;
            }
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
        b.sleep().await;
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        stop.cancel();
        assert!(!b.wait(&stop).await);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_returns_the_first_success() {
        let stop = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut failures_left = 2;
        let mut delays = Vec::new();
        let got = b
            .retry(
                &stop,
                || {
                    let outcome = if failures_left == 0 {
                        Ok("done")
                    } else {
                        failures_left -= 1;
                        Err("not yet")
                    };
                    std::future::ready(outcome)
                },
                |_, delay| delays.push(delay),
            )
            .await;
        assert_eq!(got, Some("done"));
        assert_eq!(
            delays,
            [Duration::from_millis(100), Duration::from_millis(200)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_retry_in_the_middle_of_its_wait() {
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cancel.cancel();
        });
        let start = tokio::time::Instant::now();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let got: Option<()> = b
            .retry(&stop, || std::future::ready(Err(())), |_, _| {})
            .await;
        assert_eq!(got, None);
        assert_eq!(start.elapsed(), Duration::from_millis(10));
    }
}
