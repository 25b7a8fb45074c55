//! Exponential backoff with full jitter.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay's ceiling.
    pub base: Duration,
    /// No delay exceeds this.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

/// The delays before successive retries: the n-th is drawn uniformly from
/// `[0, min(max, base * 2^n)]` ("full jitter"), which spreads a crowd of retrying clients
/// evenly instead of sending them back in waves.
pub struct Backoff {
    ceilings: backon::ExponentialBackoff,
    last_ceiling: Duration,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new(config: BackoffConfig) -> Self {
        let ceilings = ExponentialBuilder::new()
            .with_min_delay(config.base)
            .with_max_delay(config.max)
            .with_factor(2.0)
            .without_max_times()
            .build();
        Backoff {
            ceilings,
            last_ceiling: config.max,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceilings.next().unwrap_or(self.last_ceiling);
        self.last_ceiling = ceiling;
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_jittered_under_a_doubling_ceiling() {
        let config = BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let ceilings = [100u64, 200, 400, 800, 1000, 1000];
        let mut below_half = [0u32; 6];
        for _ in 0..2000 {
            let mut b = Backoff::new(config);
            for (i, ceiling) in ceilings.iter().enumerate() {
                let d = b.next_delay();
                assert!(d <= Duration::from_millis(*ceiling), "retry {i}: {d:?}");
                if d < Duration::from_millis(ceiling / 2) {
                    below_half[i] += 1;
                }
            }
        }
        // Full jitter: about half the draws fall below half the ceiling, at every step.
        for (i, n) in below_half.iter().enumerate() {
            assert!((800..1200).contains(n), "retry {i}: {n} of 2000 below half");
        }
    }
}
