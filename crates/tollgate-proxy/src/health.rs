//! Per-target health, fed by every upstream attempt and read by routing scripts.
//!
//! It lives outside [`crate::live::LiveState`], so a reload keeps what was learned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tollgate_policy::TargetHealth;

/// Weight of the newest sample in each moving average.
const ALPHA: f64 = 0.2;

/// Moving averages of one target, updated lock-free.
#[derive(Debug, Default)]
struct Stats {
    latency_ms: AtomicU64,
    ttft_ms: AtomicU64,
    error_rate: AtomicU64,
    in_flight: AtomicI64,
    /// Samples seen per average, so the first sample sets it instead of being averaged with 0.
    attempts: AtomicU64,
    successes: AtomicU64,
    ttfts: AtomicU64,
}

fn ewma(slot: &AtomicU64, count: &AtomicU64, sample: f64) {
    // A lost race drops one sample, which a moving average does not notice.
    let first = count.fetch_add(1, Ordering::Relaxed) == 0;
    let old = f64::from_bits(slot.load(Ordering::Relaxed));
    let new = if first {
        sample
    } else {
        old + ALPHA * (sample - old)
    };
    slot.store(new.to_bits(), Ordering::Relaxed);
}

/// Health of every target seen so far, keyed by `provider/model`.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    targets: RwLock<HashMap<String, Arc<Stats>>>,
}

/// Marks one attempt in flight until dropped.
pub struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HealthRegistry {
    fn stats(&self, id: &str) -> Arc<Stats> {
        if let Some(s) = self.targets.read().ok().and_then(|m| m.get(id).cloned()) {
            return s;
        }
        let mut map = match self.targets.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(id.to_owned()).or_default().clone()
    }

    /// Counts an attempt to `id` as in flight until the guard drops.
    pub fn start(&self, id: &str) -> InFlight {
        let s = self.stats(id);
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(s)
    }

    /// Records how an attempt to `id` ended.
    pub fn record(&self, id: &str, ok: bool, latency: Duration, ttft: Option<Duration>) {
        let s = self.stats(id);
        ewma(&s.error_rate, &s.attempts, if ok { 0.0 } else { 1.0 });
        if ok {
            ewma(&s.latency_ms, &s.successes, latency.as_secs_f64() * 1000.0);
            if let Some(t) = ttft {
                ewma(&s.ttft_ms, &s.ttfts, t.as_secs_f64() * 1000.0);
            }
        }
    }

    /// A snapshot of `id`'s health (zeros when nothing is known yet).
    pub fn snapshot(&self, id: &str) -> TargetHealth {
        let Some(s) = self.targets.read().ok().and_then(|m| m.get(id).cloned()) else {
            return TargetHealth {
                circuit: "closed",
                ..TargetHealth::default()
            };
        };
        let f = |slot: &AtomicU64| f64::from_bits(slot.load(Ordering::Relaxed));
        TargetHealth {
            ewma_latency_ms: f(&s.latency_ms),
            ewma_ttft_ms: f(&s.ttft_ms),
            error_rate: f(&s.error_rate),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            circuit: "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_move_towards_samples() {
        let h = HealthRegistry::default();
        h.record(
            "a/x",
            true,
            Duration::from_millis(100),
            Some(Duration::from_millis(10)),
        );
        assert_eq!(h.snapshot("a/x").ewma_latency_ms, 100.0);
        h.record("a/x", true, Duration::from_millis(200), None);
        assert!((h.snapshot("a/x").ewma_latency_ms - 120.0).abs() < 1e-9);
        h.record("a/x", false, Duration::ZERO, None);
        assert!((h.snapshot("a/x").error_rate - 0.2).abs() < 1e-9);
        {
            let _g = h.start("a/x");
            assert_eq!(h.snapshot("a/x").in_flight, 1);
        }
        assert_eq!(h.snapshot("a/x").in_flight, 0);
        assert_eq!(h.snapshot("unknown/y").circuit, "closed");
    }
}
