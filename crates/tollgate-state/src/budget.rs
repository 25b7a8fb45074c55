//! An Envoy-style retry budget for one target.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Retry budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a fraction of requests in the window (0.2 = 20%).
    pub ratio: f64,
    /// Retries always allowed per window, so a quiet target can still retry.
    pub min_retries: u32,
    /// The window.
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_retries: 3,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Inner {
    window_start: Instant,
    requests: u32,
    retries: u32,
}

/// Counts first attempts and retries to one target over a window.
#[derive(Debug)]
pub struct RetryBudget {
    inner: Mutex<Inner>,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(now: Instant) -> Self {
        RetryBudget {
            inner: Mutex::new(Inner {
                window_start: now,
                requests: 0,
                retries: 0,
            }),
        }
    }

    fn roll(&self, now: Instant, config: &RetryBudgetConfig) -> std::sync::MutexGuard<'_, Inner> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(s.window_start) >= config.window {
            s.window_start = now;
            s.requests = 0;
            s.retries = 0;
        }
        s
    }

    /// Counts a first attempt.
    pub fn request(&self, now: Instant, config: &RetryBudgetConfig) {
        self.roll(now, config).requests += 1;
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_retry(&self, now: Instant, config: &RetryBudgetConfig) -> bool {
        let mut s = self.roll(now, config);
        let allowed = (config.ratio * f64::from(s.requests)).floor() as u32;
        if s.retries < allowed.max(config.min_retries) {
            s.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_the_ratio_and_refill_per_window() {
        let c = RetryBudgetConfig {
            ratio: 0.2,
            min_retries: 2,
            window: Duration::from_secs(10),
        };
        let b = RetryBudget::new(Instant::now());
        for _ in 0..50 {
            b.request(Instant::now(), &c);
        }
        let granted = (0..100).filter(|_| b.try_retry(Instant::now(), &c)).count();
        assert_eq!(granted, 10, "20% of 50");
        advance(Duration::from_secs(10)).await;
        let granted = (0..100).filter(|_| b.try_retry(Instant::now(), &c)).count();
        assert_eq!(granted, 2, "a fresh, quiet window keeps the minimum");
    }
}
