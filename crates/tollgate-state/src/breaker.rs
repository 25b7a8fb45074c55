//! A circuit breaker for one target.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many failures in a row.
    pub consecutive_failures: u32,
    /// Or when the failure fraction over a window reaches this (0..=1) ...
    pub error_rate: f64,
    /// ... once the window holds at least this many attempts.
    pub min_requests: u32,
    /// The error-rate window.
    pub window: Duration,
    /// How long the first open lasts; each re-open without recovery doubles it.
    pub cooldown: Duration,
    /// The longest an open lasts.
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
        }
    }
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Traffic flows.
    Closed,
    /// Traffic is skipped until the cool-down ends.
    Open,
    /// One probe is let through; its outcome closes or re-opens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// The name scripts, metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Whether an attempt may go to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Allowed,
    /// The circuit is half-open and this attempt is its probe.
    Probe,
    /// The circuit is open (or half-open with its probe in flight).
    Rejected,
}

/// A change of state, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// How long the circuit stays open, when it opened.
    pub cooldown: Option<Duration>,
}

/// A probe that has not reported back by then (its request was abandoned) no longer blocks
/// the next one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    open_until: Instant,
    probe_in_flight: bool,
    probe_started: Instant,
    consecutive_failures: u32,
    /// Opens since the circuit last closed after a successful probe.
    reopens: u32,
    window_start: Instant,
    window_requests: u32,
    window_failures: u32,
}

/// A circuit breaker. Cheap to consult: one uncontended lock per attempt.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(now: Instant) -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                open_until: now,
                probe_in_flight: false,
                probe_started: now,
                consecutive_failures: 0,
                reopens: 0,
                window_start: now,
                window_requests: 0,
                window_failures: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a handful of counters, valid after any panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (an open circuit whose cool-down ended reads as half-open).
    pub fn state(&self, now: Instant) -> CircuitState {
        let s = self.lock();
        match s.state {
            CircuitState::Open if now >= s.open_until => CircuitState::HalfOpen,
            other => other,
        }
    }

    /// Asks to send an attempt, and returns any state change this causes.
    pub fn admit(&self, now: Instant) -> (Admission, Option<Transition>) {
        let mut s = self.lock();
        match s.state {
            CircuitState::Closed => (Admission::Allowed, None),
            CircuitState::Open if now < s.open_until => (Admission::Rejected, None),
            CircuitState::Open => {
                s.state = CircuitState::HalfOpen;
                s.probe_in_flight = true;
                s.probe_started = now;
                let t = Transition {
                    from: CircuitState::Open,
                    to: CircuitState::HalfOpen,
                    cooldown: None,
                };
                (Admission::Probe, Some(t))
            }
            CircuitState::HalfOpen
                if s.probe_in_flight && now.duration_since(s.probe_started) < PROBE_TIMEOUT =>
            {
                (Admission::Rejected, None)
            }
            CircuitState::HalfOpen => {
                s.probe_in_flight = true;
                s.probe_started = now;
                (Admission::Probe, None)
            }
        }
    }

    /// Gives back a probe whose attempt said nothing about the target's health (the client
    /// left, or the request itself was refused), so the next request probes instead.
    pub fn abandon_probe(&self) {
        self.lock().probe_in_flight = false;
    }

    /// Opens the circuit for `cooldown` because another gateway saw the target fail.
    /// Returns the transition, if the state changed.
    pub fn force_open(&self, now: Instant, cooldown: Duration) -> Option<Transition> {
        let mut s = self.lock();
        let from = s.state;
        let until = later(now, cooldown);
        if from == CircuitState::Open && s.open_until >= until {
            return None;
        }
        s.state = CircuitState::Open;
        s.open_until = until;
        s.probe_in_flight = false;
        s.consecutive_failures = 0;
        (from != CircuitState::Open).then_some(Transition {
            from,
            to: CircuitState::Open,
            cooldown: Some(cooldown),
        })
    }

    /// Closes the circuit because another gateway's probe succeeded.
    pub fn force_close(&self, now: Instant) -> Option<Transition> {
        let mut s = self.lock();
        let from = s.state;
        if from == CircuitState::Closed {
            return None;
        }
        Some(close(&mut s, now))
    }

    /// Records how an attempt admitted while the circuit was closed ended. Attempts that say
    /// nothing about the target's health (the client's own errors) should not be recorded.
    /// Once the circuit is open or half-open, only the probe decides: a slow request that
    /// started before the outage must neither close it early nor stretch its cool-down.
    pub fn record(&self, now: Instant, ok: bool, config: &BreakerConfig) -> Option<Transition> {
        let mut s = self.lock();
        if s.state != CircuitState::Closed {
            return None;
        }
        if now.duration_since(s.window_start) >= config.window {
            s.window_start = now;
            s.window_requests = 0;
            s.window_failures = 0;
        }
        s.window_requests += 1;
        if ok {
            s.consecutive_failures = 0;
        } else {
            s.consecutive_failures += 1;
            s.window_failures += 1;
        }
        (!ok && trips(&s, config)).then(|| open(&mut s, now, config, CircuitState::Closed))
    }

    /// Records how the half-open circuit's probe ended: success closes the circuit, failure
    /// re-opens it for a longer cool-down.
    pub fn record_probe(
        &self,
        now: Instant,
        ok: bool,
        config: &BreakerConfig,
    ) -> Option<Transition> {
        let mut s = self.lock();
        match s.state {
            // Another gateway's verdict already decided while the probe ran.
            CircuitState::Closed => {
                drop(s);
                self.record(now, ok, config)
            }
            _ if ok => Some(close(&mut s, now)),
            from => Some(open(&mut s, now, config, from)),
        }
    }
}

fn trips(s: &Inner, config: &BreakerConfig) -> bool {
    s.consecutive_failures >= config.consecutive_failures.max(1)
        || (s.window_requests >= config.min_requests.max(1)
            && f64::from(s.window_failures) >= config.error_rate * f64::from(s.window_requests))
}

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Closes the circuit with a clean slate: no streak, a fresh window, cool-downs reset.
fn close(s: &mut Inner, now: Instant) -> Transition {
    let from = s.state;
    s.state = CircuitState::Closed;
    s.probe_in_flight = false;
    s.reopens = 0;
    s.consecutive_failures = 0;
    s.window_start = now;
    s.window_requests = 0;
    s.window_failures = 0;
    Transition {
        from,
        to: CircuitState::Closed,
        cooldown: None,
    }
}

fn open(s: &mut Inner, now: Instant, config: &BreakerConfig, from: CircuitState) -> Transition {
    let factor = 2u32.saturating_pow(s.reopens.min(16));
    let cooldown = config
        .cooldown
        .saturating_mul(factor)
        .min(config.max_cooldown);
    s.state = CircuitState::Open;
    s.open_until = later(now, cooldown);
    s.probe_in_flight = false;
    s.reopens += 1;
    s.consecutive_failures = 0;
    Transition {
        from,
        to: CircuitState::Open,
        cooldown: Some(cooldown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(4),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_probes_and_closes() {
        let (b, c) = (Breaker::new(Instant::now()), config());
        assert_eq!(b.record(Instant::now(), false, &c), None);
        assert_eq!(b.record(Instant::now(), false, &c), None);
        let t = b.record(Instant::now(), false, &c).expect("opens");
        assert_eq!(
            (t.to, t.cooldown),
            (CircuitState::Open, Some(Duration::from_secs(1)))
        );
        assert_eq!(b.admit(Instant::now()).0, Admission::Rejected);
        advance(Duration::from_millis(999)).await;
        assert_eq!(b.admit(Instant::now()).0, Admission::Rejected);
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(Instant::now()), CircuitState::HalfOpen);
        assert_eq!(b.admit(Instant::now()).0, Admission::Probe);
        assert_eq!(
            b.admit(Instant::now()).0,
            Admission::Rejected,
            "one probe at a time"
        );
        assert_eq!(
            b.record(Instant::now(), true, &c),
            None,
            "only the probe decides"
        );
        let t = b.record_probe(Instant::now(), true, &c).expect("closes");
        assert_eq!(t.to, CircuitState::Closed);
        assert_eq!(b.admit(Instant::now()).0, Admission::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let (b, c) = (Breaker::new(Instant::now()), config());
        for _ in 0..3 {
            b.record(Instant::now(), false, &c);
        }
        let mut cooldowns = Vec::new();
        for _ in 0..4 {
            advance(Duration::from_secs(60)).await;
            assert_eq!(b.admit(Instant::now()).0, Admission::Probe);
            let t = b.record_probe(Instant::now(), false, &c).expect("re-opens");
            cooldowns.push(t.cooldown.expect("cooldown").as_secs());
        }
        assert_eq!(cooldowns, [2, 4, 4, 4]);
        // Recovery resets the growth.
        advance(Duration::from_secs(60)).await;
        b.admit(Instant::now());
        b.record_probe(Instant::now(), true, &c);
        for _ in 0..3 {
            b.record(Instant::now(), false, &c);
        }
        assert_eq!(b.state(Instant::now()), CircuitState::Open);
        advance(Duration::from_secs(1)).await;
        assert_eq!(
            b.state(Instant::now()),
            CircuitState::HalfOpen,
            "back to 1 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_or_lost_probe_does_not_block_the_next() {
        let (b, c) = (Breaker::new(Instant::now()), config());
        for _ in 0..3 {
            b.record(Instant::now(), false, &c);
        }
        advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(Instant::now()).0, Admission::Probe);
        b.abandon_probe();
        assert_eq!(b.admit(Instant::now()).0, Admission::Probe, "given back");
        assert_eq!(b.admit(Instant::now()).0, Admission::Rejected);
        advance(PROBE_TIMEOUT).await;
        assert_eq!(
            b.admit(Instant::now()).0,
            Admission::Probe,
            "never reported back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn another_gateways_verdict_applies_locally() {
        let b = Breaker::new(Instant::now());
        let t = b
            .force_open(Instant::now(), Duration::from_secs(2))
            .expect("opens");
        assert_eq!((t.from, t.to), (CircuitState::Closed, CircuitState::Open));
        assert_eq!(b.admit(Instant::now()).0, Admission::Rejected);
        assert_eq!(
            b.force_open(Instant::now(), Duration::from_secs(1)),
            None,
            "no shorter"
        );
        advance(Duration::from_secs(2)).await;
        assert_eq!(b.state(Instant::now()), CircuitState::HalfOpen);
        let t = b.force_close(Instant::now()).expect("closes");
        assert_eq!(t.to, CircuitState::Closed);
        assert_eq!(b.admit(Instant::now()).0, Admission::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_error_rate_without_a_streak() {
        let (b, c) = (Breaker::new(Instant::now()), config());
        // Alternate: never 3 in a row, but half of the window fails.
        let mut opened = None;
        for i in 0..10 {
            if let Some(t) = b.record(Instant::now(), i % 2 == 0, &c) {
                opened = Some((i, t.to));
            }
        }
        assert_eq!(opened, Some((9, CircuitState::Open)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_rate_window_rolls_over() {
        let (b, c) = (Breaker::new(Instant::now()), config());
        for i in 0..9 {
            b.record(Instant::now(), i % 2 == 0, &c);
        }
        advance(Duration::from_secs(10)).await;
        // A new window: one more failure is 1 of 1, under min_requests.
        assert_eq!(b.record(Instant::now(), false, &c), None);
        assert_eq!(b.state(Instant::now()), CircuitState::Closed);
    }
}
