//! Rate limits: requests and tokens per minute, one GCRA bucket per limited entity.
//!
//! GCRA keeps one number per bucket, its theoretical arrival time (TAT): each unit moves it
//! `interval` into the future, and a call is refused while that would put it more than the
//! burst ahead of now. It is written out here rather than taken from `governor` because
//! token limits must be charged after the call as well, with the tokens the provider reports
//! (more or fewer than estimated), which GCRA allows as a debt and governor's API does not.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A limit: `per_minute` units, all usable in one burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Units per minute (at least 1).
    pub per_minute: u64,
}

impl Rate {
    /// Time one unit moves the bucket on.
    pub fn interval(self) -> Duration {
        Duration::from_secs(60) / u32::try_from(self.per_minute.max(1)).unwrap_or(u32::MAX)
    }

    /// How far ahead of now the bucket may run: a minute, so all of it is usable at once.
    pub fn burst(self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Where a bucket stands after a call, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The limit per minute.
    pub limit: u64,
    /// Units that could be taken now.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// A refused call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// When the call would be admitted.
    pub retry_after: Duration,
    /// The bucket's standing.
    pub standing: Standing,
}

/// Buckets by name (a rule and the entity it limits, e.g. `rpm:key:team-a`).
#[derive(Debug, Default)]
pub struct RateLimits {
    tats: Mutex<HashMap<String, Instant>>,
}

impl RateLimits {
    /// Takes `n` units from `bucket` at `now`, or refuses without taking any.
    pub fn take(
        &self,
        bucket: &str,
        rate: Rate,
        n: u64,
        now: Instant,
    ) -> Result<Standing, Limited> {
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = tats.get(bucket).copied().unwrap_or(now).max(now);
        let new_tat = tat + scaled(rate.interval(), n);
        let ahead = new_tat - now;
        if ahead > rate.burst() {
            let standing = standing(rate, tat - now);
            return Err(Limited {
                retry_after: ahead - rate.burst(),
                standing,
            });
        }
        tats.insert(bucket.to_owned(), new_tat);
        Ok(standing(rate, ahead))
    }

    /// Adjusts `bucket` after the call by `delta` units: a debt when positive (it may take
    /// the bucket past its burst, delaying later calls), a refund when negative.
    pub fn adjust(&self, bucket: &str, rate: Rate, delta: i64, now: Instant) {
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        let tat = tats.get(bucket).copied().unwrap_or(now).max(now);
        let step = scaled(rate.interval(), delta.unsigned_abs());
        let new_tat = if delta >= 0 {
            tat + step
        } else {
            tat.checked_sub(step).unwrap_or(now).max(now)
        };
        tats.insert(bucket.to_owned(), new_tat);
    }

    /// Forgets buckets that are full again (their TAT has passed), so idle entities do not
    /// hold memory.
    pub fn sweep(&self, now: Instant) {
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        tats.retain(|_, tat| *tat > now);
    }
}

fn scaled(interval: Duration, n: u64) -> Duration {
    interval.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Where a bucket of `rate` stands when its TAT is `ahead` of now.
pub fn standing(rate: Rate, ahead: Duration) -> Standing {
    let free = rate.burst().saturating_sub(ahead);
    let interval = rate.interval().as_nanos().max(1);
    Standing {
        limit: rate.per_minute,
        remaining: u64::try_from(free.as_nanos() / interval).unwrap_or(u64::MAX),
        reset: ahead,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_minute_is_usable_at_once_then_refills_evenly() {
        let limits = RateLimits::default();
        let rate = Rate { per_minute: 60 };
        let t0 = Instant::now();
        for i in 0..60 {
            let s = limits.take("b", rate, 1, t0).expect("within the burst");
            assert_eq!(s.remaining, 59 - i);
        }
        let refused = limits.take("b", rate, 1, t0).expect_err("burst used");
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.standing.remaining, 0);
        // One unit a second comes back.
        assert!(
            limits
                .take("b", rate, 1, t0 + Duration::from_secs(1))
                .is_ok()
        );
        assert!(
            limits
                .take("b", rate, 1, t0 + Duration::from_secs(1))
                .is_err()
        );
        // Other buckets are independent.
        assert!(limits.take("other", rate, 1, t0).is_ok());
    }

    #[test]
    fn tokens_are_taken_in_bulk_and_settled_as_debt_or_refund() {
        let limits = RateLimits::default();
        let rate = Rate { per_minute: 1000 };
        let t0 = Instant::now();
        limits.take("tpm", rate, 400, t0).expect("room");
        // The provider reported 500 more tokens than estimated: a debt.
        limits.adjust("tpm", rate, 500, t0);
        assert!(
            limits.take("tpm", rate, 200, t0).is_err(),
            "900 used, 200 more refused"
        );
        assert_eq!(
            limits.take("tpm", rate, 100, t0).map(|s| s.remaining),
            Ok(0)
        );
        // A refund gives room back.
        limits.adjust("tpm", rate, -300, t0);
        assert_eq!(
            limits.take("tpm", rate, 300, t0).map(|s| s.remaining),
            Ok(0)
        );
        // A request larger than the whole minute can never pass.
        assert!(limits.take("tpm2", rate, 1001, t0).is_err());
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limits = RateLimits::default();
        let rate = Rate { per_minute: 60 };
        let t0 = Instant::now();
        limits.take("b", rate, 1, t0).expect("room");
        limits.sweep(t0 + Duration::from_secs(2));
        assert!(limits.tats.lock().expect("lock").is_empty());
    }
}
