//! `[resilience]` and the per-model overrides: retries, backoff, retry budget, circuit breaker,
//! deadlines and load-balancing strategy.

use crate::locate::ConfigPath;
use crate::raw::{RawModel, RawResilience};
use crate::validate::Checker;
use std::time::Duration;

/// How a model orders its targets for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The configured order (the default).
    Priority,
    /// The first target drawn by `weight`, the rest in order.
    Weighted,
    /// Power of two choices over the targets' moving-average latency.
    LeastLatency,
}

/// Circuit-breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Whether targets' circuits can open at all.
    pub enabled: bool,
    /// Open after this many failures in a row.
    pub consecutive_failures: u32,
    /// Or when this fraction of a window's attempts failed ...
    pub error_rate: f64,
    /// ... and the window holds at least this many.
    pub min_requests: u32,
    /// The error-rate window.
    pub window: Duration,
    /// The first open's length; doubles on each re-open.
    pub cooldown: Duration,
    /// The longest open.
    pub max_cooldown: Duration,
}

/// `[resilience]`, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resilience {
    /// Retries of the same target on a retryable error, by default.
    pub retries: u32,
    /// Backoff before the first retry (its ceiling; full jitter draws below it).
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
    /// The longest `retry-after` honoured by waiting; a longer one moves to the next target.
    pub max_retry_wait: Duration,
    /// Retries per target as a fraction of its requests.
    pub retry_budget_ratio: f64,
    /// Retries per target always allowed per budget window.
    pub retry_budget_min: u32,
    /// A request's total deadline across every attempt, by default.
    pub request_timeout: Duration,
    /// Circuit breakers.
    pub breaker: BreakerSettings,
}

pub(crate) fn check_resilience(
    raw: &RawResilience,
    path: &ConfigPath,
    ck: &mut Checker<'_>,
) -> Resilience {
    let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
    let fraction = |v: Option<f64>, d: f64, key: &str, ck: &mut Checker<'_>| {
        let v = v.unwrap_or(d);
        if !(0.0..=1.0).contains(&v) {
            ck.error(&path.key(key), "must be between 0 and 1");
        }
        v
    };
    let b = raw.breaker.as_ref();
    let bp = path.key("breaker");
    let error_rate = b.and_then(|b| b.error_rate).unwrap_or(0.5);
    if !(error_rate > 0.0 && error_rate <= 1.0) {
        ck.error(&bp.key("error_rate"), "must be above 0 and at most 1");
    }
    let breaker = BreakerSettings {
        enabled: b.and_then(|b| b.enabled).unwrap_or(true),
        consecutive_failures: b.and_then(|b| b.consecutive_failures).unwrap_or(5).max(1),
        error_rate,
        min_requests: b.and_then(|b| b.min_requests).unwrap_or(20).max(1),
        window: ms(b.and_then(|b| b.window_ms), 30_000),
        cooldown: ms(b.and_then(|b| b.cooldown_ms), 5_000),
        max_cooldown: ms(b.and_then(|b| b.max_cooldown_ms), 60_000),
    };
    if breaker.max_cooldown < breaker.cooldown {
        ck.error(&bp.key("max_cooldown_ms"), "must be at least `cooldown_ms`");
    }
    let out = Resilience {
        retries: raw.retries.unwrap_or(1),
        backoff_base: ms(raw.backoff_base_ms, 100),
        backoff_max: ms(raw.backoff_max_ms, 2_000),
        max_retry_wait: ms(raw.max_retry_wait_ms, 5_000),
        retry_budget_ratio: fraction(raw.retry_budget_ratio, 0.2, "retry_budget_ratio", ck),
        retry_budget_min: raw.retry_budget_min.unwrap_or(3),
        request_timeout: ms(raw.request_timeout_ms, 600_000),
        breaker,
    };
    if out.request_timeout.is_zero() {
        ck.error(&path.key("request_timeout_ms"), "must be greater than 0");
    }
    out
}

/// A model's strategy: as configured, else weighted when any target has a weight.
pub(crate) fn check_strategy(m: &RawModel, path: &ConfigPath, ck: &mut Checker<'_>) -> Strategy {
    let weighted = m.targets.iter().any(|t| t.weight.is_some());
    match m.strategy.as_deref() {
        None if weighted => Strategy::Weighted,
        None | Some("priority") => Strategy::Priority,
        Some("weighted") => Strategy::Weighted,
        Some("least_latency") => Strategy::LeastLatency,
        Some(other) => {
            ck.error(
                &path.key("strategy"),
                format_args!(
                    "unknown strategy `{other}`; expected priority, weighted or least_latency"
                ),
            );
            Strategy::Priority
        }
    }
}
