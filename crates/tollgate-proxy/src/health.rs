//! Per-target health, fed by every upstream attempt and read by routing and scripts: moving
//! averages, the circuit breaker and the retry budget.
//!
//! It lives outside [`crate::live::LiveState`], so a reload keeps what was learned; settings
//! come from the live config at each call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tollgate_config::{BreakerSettings, Resilience};
use tollgate_policy::TargetHealth;
use tollgate_state::shared::CircuitEvent;
use tollgate_state::{
    Admission, Breaker, BreakerConfig, CircuitState, RetryBudget, RetryBudgetConfig, Transition,
};

/// Weight of the newest sample in each moving average.
const ALPHA: f64 = 0.2;

/// One target's health: moving averages (lock-free), breaker and retry budget.
#[derive(Debug)]
struct Stats {
    breaker: Breaker,
    budget: RetryBudget,
    last_error: Mutex<Option<String>>,
    latency_ms: AtomicU64,
    ttft_ms: AtomicU64,
    error_rate: AtomicU64,
    in_flight: AtomicI64,
    /// Samples seen per average, so the first sample sets it instead of being averaged with 0.
    attempts: AtomicU64,
    successes: AtomicU64,
    ttfts: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        let now = Instant::now();
        Stats {
            breaker: Breaker::new(now),
            budget: RetryBudget::new(now),
            last_error: Mutex::new(None),
            latency_ms: AtomicU64::default(),
            ttft_ms: AtomicU64::default(),
            error_rate: AtomicU64::default(),
            in_flight: AtomicI64::default(),
            attempts: AtomicU64::default(),
            successes: AtomicU64::default(),
            ttfts: AtomicU64::default(),
        }
    }
}

/// What an attempt says about its target's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered.
    Healthy,
    /// It failed in a way that is the target's fault.
    Unhealthy,
    /// It refused this request for the request's sake (context too long, a client error):
    /// no mark against the target.
    Neutral,
}

fn breaker_config(b: &BreakerSettings) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: b.consecutive_failures,
        error_rate: b.error_rate,
        min_requests: b.min_requests,
        window: b.window,
        cooldown: b.cooldown,
        max_cooldown: b.max_cooldown,
    }
}

/// The retry budget's window.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

fn budget_config(r: &Resilience) -> RetryBudgetConfig {
    RetryBudgetConfig {
        ratio: r.retry_budget_ratio,
        min_retries: r.retry_budget_min,
        window: BUDGET_WINDOW,
    }
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
    /// Where local circuit transitions go to be shared with other gateways, if anywhere.
    sharing: OnceLock<mpsc::Sender<CircuitEvent>>,
}

/// Marks one attempt in flight until dropped.
pub struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One target's health, for the attempts of one request.
pub struct TargetStats<'a> {
    id: &'a str,
    stats: Arc<Stats>,
    registry: &'a HealthRegistry,
}

impl TargetStats<'_> {
    /// Counts an attempt to the target as in flight until the guard drops.
    pub fn start(&self) -> InFlight {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.stats.clone())
    }

    /// Asks the target's circuit breaker whether an attempt may go.
    pub fn admit(&self, r: &Resilience) -> Admission {
        if !r.breaker.enabled {
            return Admission::Allowed;
        }
        let (admission, transition) = self.stats.clone().breaker.admit(Instant::now());
        if let Some(t) = transition {
            self.registry.transitioned(self.id, t, false);
        }
        admission
    }

    /// The state of the target's circuit.
    pub fn circuit_state(&self, r: &Resilience) -> CircuitState {
        if !r.breaker.enabled {
            return CircuitState::Closed; // whatever it was before a reload turned breakers off
        }
        self.stats.breaker.state(Instant::now())
    }

    /// Counts a first attempt to the target in its retry budget.
    pub fn count_request(&self, r: &Resilience) {
        self.stats
            .clone()
            .budget
            .request(Instant::now(), &budget_config(r));
    }

    /// Takes a retry of the target from its budget, if any is left.
    pub fn try_retry(&self, r: &Resilience) -> bool {
        self.stats
            .clone()
            .budget
            .try_retry(Instant::now(), &budget_config(r))
    }

    /// Records how an attempt to the target ended: averages, breaker and last error.
    /// `probe`: the attempt was the half-open circuit's probe, which alone decides it.
    pub fn record(
        &self,
        verdict: Verdict,
        probe: bool,
        error: Option<String>,
        latency: Duration,
        ttft: Option<Duration>,
        r: &Resilience,
    ) {
        let s = &self.stats;
        if verdict != Verdict::Neutral && r.breaker.enabled {
            let (ok, now, config) = (
                verdict == Verdict::Healthy,
                Instant::now(),
                breaker_config(&r.breaker),
            );
            let t = if probe {
                s.breaker.record_probe(now, ok, &config)
            } else {
                s.breaker.record(now, ok, &config)
            };
            if let Some(t) = t {
                self.registry.transitioned(self.id, t, false);
            }
        }
        if let Some(e) = error {
            *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        if verdict == Verdict::Neutral {
            if probe {
                s.breaker.abandon_probe(); // the next request probes instead
            }
            return;
        }
        let ok = verdict == Verdict::Healthy;
        ewma(&s.error_rate, &s.attempts, if ok { 0.0 } else { 1.0 });
        if ok {
            ewma(&s.latency_ms, &s.successes, latency.as_secs_f64() * 1000.0);
            if let Some(t) = ttft {
                ewma(&s.ttft_ms, &s.ttfts, t.as_secs_f64() * 1000.0);
            }
        }
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

    /// One target's health, looked up once for all of an attempt's bookkeeping.
    pub fn target<'a>(&'a self, id: &'a str) -> TargetStats<'a> {
        TargetStats {
            id,
            stats: self.stats(id),
            registry: self,
        }
    }

    /// Shares this gateway's circuit transitions through `tx` from now on.
    pub fn share(&self, tx: mpsc::Sender<CircuitEvent>) {
        let _ = self.sharing.set(tx);
    }

    /// Applies another gateway's circuit transition.
    pub fn apply_shared(&self, ev: CircuitEvent) {
        let stats = self.stats(&ev.target);
        let now = Instant::now();
        let t = if ev.open {
            stats.breaker.force_open(now, ev.cooldown)
        } else {
            stats.breaker.force_close(now)
        };
        if let Some(t) = t {
            self.transitioned(&ev.target, t, true);
        }
    }

    /// Logs and counts a transition, and shares it if it happened here.
    fn transitioned(&self, id: &str, t: Transition, remote: bool) {
        crate::metrics::record_circuit(id, t.to.as_str());
        let origin = if remote {
            "another gateway"
        } else {
            "this gateway"
        };
        match t.to {
            CircuitState::Open => tracing::warn!(target_id = %id, from = t.from.as_str(),
                cooldown_ms = t.cooldown.map(|c| c.as_millis() as u64), origin,
                "Circuit opened."),
            _ => tracing::info!(target_id = %id, from = t.from.as_str(), to = t.to.as_str(),
                origin, "Circuit state changed."),
        }
        if remote || t.to == CircuitState::HalfOpen {
            return;
        }
        if let Some(tx) = self.sharing.get() {
            // Never block a request on sharing: a full queue drops the news, not traffic.
            let _ = tx.try_send(CircuitEvent {
                target: id.to_owned(),
                open: t.to == CircuitState::Open,
                cooldown: t.cooldown.unwrap_or_default(),
            });
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
            circuit: s.breaker.state(Instant::now()).as_str(),
        }
    }

    /// Every known target's health and last error, for the admin API.
    pub fn report(&self) -> serde_json::Value {
        let ids: Vec<String> = self
            .targets
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut out = serde_json::Map::new();
        for id in ids {
            let h = self.snapshot(&id);
            let last_error = self
                .stats(&id)
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            out.insert(
                id,
                serde_json::json!({
                    "circuit": h.circuit, "ewma_latency_ms": h.ewma_latency_ms,
                    "ewma_ttft_ms": h.ewma_ttft_ms, "error_rate": h.error_rate,
                    "in_flight": h.in_flight, "last_error": last_error,
                }),
            );
        }
        serde_json::Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_move_towards_samples() {
        let h = HealthRegistry::default();
        let r = resilience();
        let ok = |h: &HealthRegistry, ms| {
            h.target("a/x").record(
                Verdict::Healthy,
                false,
                None,
                Duration::from_millis(ms),
                None,
                &r,
            );
        };
        h.target("a/x").record(
            Verdict::Healthy,
            false,
            None,
            Duration::from_millis(100),
            Some(Duration::from_millis(10)),
            &r,
        );
        assert_eq!(h.snapshot("a/x").ewma_latency_ms, 100.0);
        ok(&h, 200);
        assert!((h.snapshot("a/x").ewma_latency_ms - 120.0).abs() < 1e-9);
        h.target("a/x").record(
            Verdict::Unhealthy,
            false,
            Some("HTTP 503".into()),
            Duration::ZERO,
            None,
            &r,
        );
        assert!((h.snapshot("a/x").error_rate - 0.2).abs() < 1e-9);
        {
            let _g = h.target("a/x").start();
            assert_eq!(h.snapshot("a/x").in_flight, 1);
        }
        assert_eq!(h.snapshot("a/x").in_flight, 0);
        assert_eq!(h.snapshot("unknown/y").circuit, "closed");
        assert_eq!(h.report()["a/x"]["last_error"], "HTTP 503");
    }

    fn resilience() -> Resilience {
        let env = |_: &str| None;
        tollgate_config::load_str("", std::path::Path::new("t.toml"), &env)
            .expect("defaults")
            .resilience
    }

    #[tokio::test]
    async fn neutral_verdicts_never_open_a_circuit() {
        let (h, r) = (HealthRegistry::default(), resilience());
        for _ in 0..10 {
            h.target("a/x")
                .record(Verdict::Neutral, false, None, Duration::ZERO, None, &r);
        }
        assert_eq!(h.snapshot("a/x").circuit, "closed");
        assert_eq!(h.snapshot("a/x").error_rate, 0.0);
        for _ in 0..5 {
            h.target("a/x")
                .record(Verdict::Unhealthy, false, None, Duration::ZERO, None, &r);
        }
        assert_eq!(h.snapshot("a/x").circuit, "open");
        assert_eq!(h.target("a/x").admit(&r), Admission::Rejected);
    }
}
