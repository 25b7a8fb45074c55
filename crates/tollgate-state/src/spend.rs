//! Budget counters: reserve the worst case before a call, settle the actual cost after it.
//! A counter's unit is its caller's: picodollars for a USD budget, tokens for a token budget
//! (each ask carries its own amount).
//!
//! Each budget holds what was spent in its current period and what is reserved by calls in
//! flight. A call reserves against every budget that applies, all or none, under the
//! budgets' locks (taken in name order, so two calls never deadlock), so concurrent calls can
//! never together commit more than a budget's limit. Settling releases the reservation and
//! adds the actual cost; only a call whose actual cost exceeds its reservation (what the
//! caller's worst case did not bound) can take a budget past its limit, by that call alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tollgate_types::Usd;

/// One budget to reserve against: its name, its limit and the start of its current period
/// (Unix seconds; a later start than the stored one resets the budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetAsk<'a> {
    /// The budget's unique name.
    pub name: &'a str,
    /// Its cap for the period.
    pub limit: Usd,
    /// When its current period began.
    pub period_start: i64,
    /// What to reserve against it, in its unit.
    pub amount: Usd,
}

/// A refused reservation: the first budget without room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget {name:?} is exhausted: {spent} spent and {reserved} reserved of {limit} USD")]
pub struct BudgetExceeded {
    /// The budget's name.
    pub name: String,
    /// Its cap.
    pub limit: Usd,
    /// Spent in the current period.
    pub spent: Usd,
    /// Held by calls in flight.
    pub reserved: Usd,
}

#[derive(Debug, Default)]
struct Counter {
    period_start: i64,
    spent: Usd,
    reserved: Usd,
}

impl Counter {
    /// Starts a new period when `period_start` is later than the current one. Reservations
    /// made in the old period are forgotten: they settle into the new one as spend only.
    fn roll(&mut self, period_start: i64) {
        if period_start > self.period_start {
            *self = Counter {
                period_start,
                ..Counter::default()
            };
        }
    }
}

/// What a call holds until it settles.
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled"]
pub struct Reservation {
    held: Vec<HeldCounter>,
}

/// One budget a reservation holds: its name, counter, period and the amount held.
type HeldCounter = (Arc<str>, Arc<Mutex<Counter>>, i64, Usd);

/// One budget's share of a settled call, for the durable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The budget's name.
    pub name: Arc<str>,
    /// The period the cost was added to.
    pub period_start: i64,
    /// The cost.
    pub amount: Usd,
}

/// A budget's state, for the admin API and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSnapshot {
    /// Its name.
    pub name: String,
    /// Start of its current period.
    pub period_start: i64,
    /// Spent in the period.
    pub spent: Usd,
    /// Held by calls in flight.
    pub reserved: Usd,
}

/// Every budget's counters, by name. Lives outside the live state: spend survives reloads.
#[derive(Debug, Default)]
pub struct Budgets {
    counters: RwLock<HashMap<Arc<str>, Arc<Mutex<Counter>>>>,
}

impl Budgets {
    fn counter(&self, name: &str) -> (Arc<str>, Arc<Mutex<Counter>>) {
        let read = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, c)) = read.get_key_value(name) {
            return (k.clone(), c.clone());
        }
        drop(read);
        let mut write = self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match write.get_key_value(name) {
            Some((k, c)) => (k.clone(), c.clone()),
            None => {
                let (k, c): (Arc<str>, Arc<Mutex<Counter>>) = (Arc::from(name), Arc::default());
                write.insert(k.clone(), c.clone());
                (k, c)
            }
        }
    }

    /// Reserves each ask's amount against its budget, on every budget in `asks` or none.
    pub fn reserve(&self, asks: &[BudgetAsk<'_>]) -> Result<Reservation, BudgetExceeded> {
        let mut held: Vec<HeldCounter> = asks
            .iter()
            .map(|a| {
                let (name, counter) = self.counter(a.name);
                (name, counter, a.period_start, a.amount)
            })
            .collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        held.dedup_by(|a, b| a.0 == b.0);
        let limits: HashMap<&str, Usd> = asks.iter().map(|a| (a.name, a.limit)).collect();
        let mut guards: Vec<_> = held
            .iter()
            .map(|(_, c, _, _)| c.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        for ((name, _, period_start, amount), counter) in held.iter().zip(guards.iter_mut()) {
            let amount = *amount;
            counter.roll(*period_start);
            let limit = limits.get(&**name).copied().unwrap_or(Usd::MAX);
            let committed = counter.spent.saturating_add(counter.reserved);
            if committed.saturating_add(amount) > limit {
                return Err(BudgetExceeded {
                    name: name.to_string(),
                    limit,
                    spent: counter.spent,
                    reserved: counter.reserved,
                });
            }
        }
        // Settle against the period the amount was actually added to: the counter's own, which
        // may be later than the request's clock said (a reload changed the period, or another
        // request rolled it first).
        let periods: Vec<i64> = guards
            .iter_mut()
            .zip(&held)
            .map(|(counter, (_, _, _, amount))| {
                counter.reserved = counter.reserved.saturating_add(*amount);
                counter.period_start
            })
            .collect();
        drop(guards);
        for ((_, _, period_start, _), counter_period) in held.iter_mut().zip(periods) {
            *period_start = counter_period;
        }
        Ok(Reservation { held })
    }

    /// Releases `reservation` and adds to each budget it held what `actual` says that budget
    /// was charged (by name: a USD budget the cost, a token budget the tokens).
    pub fn settle(&self, reservation: Reservation, actual: impl Fn(&str) -> Usd) -> Vec<Charge> {
        reservation
            .held
            .into_iter()
            .map(|(name, counter, period_start, amount)| {
                let actual = actual(&name);
                let mut c = counter.lock().unwrap_or_else(PoisonError::into_inner);
                if c.period_start == period_start {
                    c.reserved = c.reserved.saturating_sub(amount);
                }
                c.spent = c.spent.saturating_add(actual);
                Charge {
                    name,
                    period_start: c.period_start,
                    amount: actual,
                }
            })
            .collect()
    }

    /// Sets what `name` had spent in the period starting at `period_start` (from the durable
    /// store, at start). An older period than the counter's is ignored.
    pub fn restore(&self, name: &str, period_start: i64, spent: Usd) {
        let (_, counter) = self.counter(name);
        let mut c = counter.lock().unwrap_or_else(PoisonError::into_inner);
        if period_start >= c.period_start {
            c.period_start = period_start;
            c.spent = spent;
        }
    }

    /// What `name` has spent and reserved in the period starting at `period_start`: zero when
    /// its counter is in another period, or unknown.
    pub fn usage(&self, name: &str, period_start: i64) -> (Usd, Usd) {
        let read = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        read.get(name).map_or((Usd::ZERO, Usd::ZERO), |c| {
            let c = c.lock().unwrap_or_else(PoisonError::into_inner);
            if c.period_start == period_start {
                (c.spent, c.reserved)
            } else {
                (Usd::ZERO, Usd::ZERO)
            }
        })
    }

    /// Every budget's state, by name.
    pub fn snapshot(&self) -> Vec<BudgetSnapshot> {
        let read = self.counters.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<BudgetSnapshot> = read
            .iter()
            .map(|(name, c)| {
                let c = c.lock().unwrap_or_else(PoisonError::into_inner);
                BudgetSnapshot {
                    name: name.to_string(),
                    period_start: c.period_start,
                    spent: c.spent,
                    reserved: c.reserved,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
