//! Gateway state that outlives a request and a reload: resilience machinery and spend.
//!
//! - [`Breaker`]: a circuit breaker per target (provider + model). Closed → open after N
//!   consecutive failures or an error rate over a window; half-open with one probe after a
//!   cool-down that doubles on repeated opens, up to a cap.
//! - [`RetryBudget`]: Envoy-style: retries are at most a fraction of recent requests per
//!   target, so an outage does not multiply load or cost.
//! - [`Backoff`]: exponential backoff with full jitter, for retries of the same target.
//! - [`shared`]: circuit transitions shared between gateways through Redis pub/sub.
//! - [`RateLimits`]: requests and tokens per minute, GCRA buckets per limited entity.
//! - [`redis_budgets`]: the same budgets and rate limits shared by several gateways, counted
//!   in Redis and admitted together in one script.
//! - [`Budgets`]: spend caps, reserved before a call and settled after it, exact under
//!   concurrency; [`store`] keeps spend and the ledger in SQLite, so both survive a restart.
//!
//! The state machines are pure state and arithmetic on [`tokio::time::Instant`], so tests run
//! on paused time without sleeping.

mod backoff;
mod breaker;
mod budget;
mod ratelimit;
pub mod redis_budgets;
pub mod shared;
mod spend;
pub mod store;

pub use backoff::{Backoff, BackoffConfig};
pub use breaker::{Admission, Breaker, BreakerConfig, CircuitState, Transition};
pub use budget::{RetryBudget, RetryBudgetConfig};
pub use ratelimit::{Limited, Rate, RateLimits, Standing, standing};
pub use spend::{BudgetAsk, BudgetExceeded, BudgetSnapshot, Budgets, Charge, Reservation};
