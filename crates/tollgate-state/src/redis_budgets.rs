//! Budgets and rate limits shared by several gateways: the same reserve-then-settle as
//! [`crate::Budgets`] and the same GCRA as [`crate::RateLimits`], with the counters in Redis.
//!
//! A budget's period is one hash, `{prefix}:budget:{name}:{period_start}`, with `s` (spent)
//! and `r` (reserved) in picodollars. A rate-limit bucket is one string,
//! `{prefix}:rate:{bucket}`: its theoretical arrival time in microseconds of Redis's clock
//! (so gateways' clocks need not agree), expiring when the bucket is full again.
//!
//! Admission runs one Lua script over every rate bucket and budget that applies: all are
//! checked, then all are taken, or none — one atomic step across all gateways and one round
//! trip on the request path. Settling (budgets, and token buckets with the reported tokens)
//! is one more script after the answer. Budget periods other than `total` expire a day after
//! they end.
//!
//! Each reservation is also recorded as a hold (`…:holds`, a sorted set by expiry, and
//! `…:held`, its amount) that expires with the request's deadline: a gateway that dies
//! between reserving and settling cannot keep budget reserved for ever, as the next admission
//! to that budget takes expired holds back. A settlement that comes after its hold expired
//! still adds what was spent.

use crate::ratelimit::{Rate, Standing, standing};
use crate::spend::{BudgetAsk, BudgetExceeded};
use redis::aio::ConnectionManager;
use std::time::Duration;
use tollgate_types::Usd;

/// Why the shared counters could not be used.
#[derive(Debug, thiserror::Error)]
#[error("budget counters in Redis: {0}")]
pub struct RedisBudgetError(#[from] redis::RedisError);

/// Checks every rate bucket and budget, then takes from all of them or none.
///
/// KEYS: the R rate buckets, then per budget its counter, holds and held amounts. ARGV: R,
/// the hold's id and lifetime (µs), then per bucket its rate (units per minute) and units,
/// then per budget its limit, TTL and the amount to reserve (each in the budget's unit).
/// Returns `{0, ahead_1, ..}` (each bucket's TAT ahead of now, µs), `{-i, retry_after, ahead}`
/// when bucket i is full, or `{b, spent, reserved}` when budget b has no room. Amounts are
/// compared as Lua numbers (doubles): exact up to about $9,000 per counter, within
/// picodollars above. TATs are kept with fractions of a microsecond, so fast rates (a tpm in
/// the millions) lose nothing to rounding.
const ADMIT: &str = r"
local r = tonumber(ARGV[1])
local hold_id = ARGV[2]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local expires = now + tonumber(ARGV[3])
local burst = 60000000
local tats, aheads = {}, {}
for i = 1, r do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + tonumber(ARGV[3 + 2 * i]) * burst / tonumber(ARGV[2 + 2 * i])
  if new_tat - now > burst then
    return {-i, string.format('%.0f', new_tat - now - burst), string.format('%.0f', tat - now)}
  end
  tats[i] = new_tat
  aheads[i] = string.format('%.0f', new_tat - now)
end
local base = 3 + 2 * r
local budgets = (#KEYS - r) / 3
for b = 1, budgets do
  local key, holds, held = KEYS[r + 3 * b - 2], KEYS[r + 3 * b - 1], KEYS[r + 3 * b]
  -- Take back holds whose requests ended without settling (their gateway died).
  local stale = redis.call('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, 500)
  if #stale > 0 then
    local total = 0
    for _, a in ipairs(redis.call('HMGET', held, unpack(stale))) do
      total = total + (tonumber(a) or 0)
    end
    if total > 0 then redis.call('HINCRBY', key, 'r', string.format('%.0f', -total)) end
    redis.call('HDEL', held, unpack(stale))
    redis.call('ZREM', holds, unpack(stale))
  end
  local spent = tonumber(redis.call('HGET', key, 's') or '0')
  local reserved = tonumber(redis.call('HGET', key, 'r') or '0')
  if spent + reserved + tonumber(ARGV[base + 3 * b]) > tonumber(ARGV[base + 3 * b - 2]) then
    return {b, string.format('%.0f', spent), string.format('%.0f', reserved)}
  end
end
for i = 1, r do
  local ms = math.floor((tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format('%.17g', tats[i]), 'PX', ms)
end
for b = 1, budgets do
  local key, holds, held = KEYS[r + 3 * b - 2], KEYS[r + 3 * b - 1], KEYS[r + 3 * b]
  local amount = ARGV[base + 3 * b]
  redis.call('HINCRBY', key, 'r', amount)
  redis.call('ZADD', holds, expires, hold_id)
  redis.call('HSET', held, hold_id, amount)
  local ttl = tonumber(ARGV[base + 3 * b - 1])
  if ttl > 0 then
    redis.call('EXPIRE', key, ttl)
    redis.call('EXPIRE', holds, ttl)
    redis.call('EXPIRE', held, ttl)
  end
end
return {0, unpack(aheads)}
";

/// Settles one request in one step: its reservation, and its token buckets moved by what
/// the provider reported against the estimate.
///
/// KEYS: three per budget (counter, holds, held), then the token buckets. ARGV: the number of
/// budgets, the hold's id, then per budget minus the amount reserved and the amount spent,
/// then per bucket its rate (units per minute) and units (a debt when positive, a refund when
/// negative). A hold already taken back is not released twice.
const SETTLE: &str = r"
local budgets = tonumber(ARGV[1])
for b = 1, budgets do
  local key, holds, held = KEYS[3 * b - 2], KEYS[3 * b - 1], KEYS[3 * b]
  if redis.call('ZREM', holds, ARGV[2]) == 1 then
    redis.call('HDEL', held, ARGV[2])
    redis.call('HINCRBY', key, 'r', ARGV[1 + 2 * b])
  end
  redis.call('HINCRBY', key, 's', ARGV[2 + 2 * b])
end
if #KEYS > 3 * budgets then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local base = 2 + 2 * budgets
  for i = 3 * budgets + 1, #KEYS do
    local a = base + 2 * (i - 3 * budgets)
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    tat = tat + tonumber(ARGV[a]) * 60000000 / tonumber(ARGV[a - 1])
    if tat > now then
      redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.floor((tat - now) / 1000) + 1)
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return 0
";

/// A rate-limit bucket to take from.
#[derive(Debug, Clone, Copy)]
pub struct SharedRate<'a> {
    /// The bucket's name.
    pub bucket: &'a str,
    /// Its rate.
    pub rate: Rate,
    /// Units to take (1 request, or the estimated tokens).
    pub units: u64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The rate bucket at this index (of those asked) is full.
    Rate {
        /// Which bucket.
        index: usize,
        /// When the request would be admitted.
        retry_after: Duration,
        /// The bucket's standing.
        standing: Standing,
    },
    /// A budget has no room.
    Budget(BudgetExceeded),
}

/// An admitted request: what it holds, and where its rate buckets stand.
#[derive(Debug)]
pub struct Admitted {
    /// Held against the budgets until settled.
    pub reservation: SharedReservation,
    /// Each bucket's standing, in the order asked.
    pub standings: Vec<Standing>,
}

/// A bucket to move after the call, by signed units.
#[derive(Debug, Clone)]
pub struct RateAdjustment {
    /// The bucket's name.
    pub bucket: String,
    /// Its rate.
    pub rate: Rate,
    /// Units: a debt when positive, a refund when negative.
    pub delta: i64,
}

/// A budget to reserve against, with when its period's counter may be dropped.
#[derive(Debug, Clone)]
pub struct SharedAsk<'a> {
    /// The budget.
    pub ask: BudgetAsk<'a>,
    /// Seconds the period's counter is kept (0: for ever).
    pub ttl_secs: u64,
}

/// What a call holds in Redis until it settles.
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled"]
pub struct SharedReservation {
    /// The budgets' counters, each with the amount held against it.
    keys: Vec<(String, Usd)>,
    /// The hold's id.
    id: String,
}

/// The shared counters.
#[derive(Clone)]
pub struct RedisBudgets {
    conn: ConnectionManager,
    prefix: String,
    admit: redis::Script,
}

impl std::fmt::Debug for RedisBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgets")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Redis integers are signed 64-bit.
fn int(u: Usd) -> i64 {
    i64::try_from(u.picos()).unwrap_or(i64::MAX)
}

fn usd(text: &str) -> Usd {
    // Lua may render large numbers in exponent form; parse as a float then.
    text.parse::<u64>()
        .map(Usd::from_picos)
        .unwrap_or_else(|_| Usd::from_dollars(text.parse::<f64>().unwrap_or(0.0) / 1e12))
}

impl RedisBudgets {
    /// Connects to `url` (reconnecting on its own after failures), with keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisBudgets, RedisBudgetError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(RedisBudgets {
            conn,
            prefix: prefix.to_owned(),
            admit: redis::Script::new(ADMIT),
        })
    }

    fn key(&self, name: &str, period_start: i64) -> String {
        format!("{}:budget:{name}:{period_start}", self.prefix)
    }

    /// A budget counter's keys: the counter, its holds by expiry, and the held amounts.
    fn hold_keys(counter: &str) -> [String; 3] {
        [
            counter.to_owned(),
            format!("{counter}:holds"),
            format!("{counter}:held"),
        ]
    }

    fn rate_key(&self, bucket: &str) -> String {
        format!("{}:rate:{bucket}", self.prefix)
    }

    /// Takes `units` from every rate bucket in `rates` and reserves each ask's amount against
    /// its budget for at most `hold_for`, or does nothing and says which refused.
    pub async fn admit(
        &self,
        rates: &[SharedRate<'_>],
        asks: &[SharedAsk<'_>],
        hold_for: Duration,
    ) -> Result<Result<Admitted, Refusal>, RedisBudgetError> {
        let keys: Vec<(String, Usd)> = asks
            .iter()
            .map(|a| (self.key(a.ask.name, a.ask.period_start), a.ask.amount))
            .collect();
        let mut invocation = self.admit.prepare_invoke();
        for r in rates {
            invocation.key(self.rate_key(r.bucket));
        }
        for (k, _) in &keys {
            for part in Self::hold_keys(k) {
                invocation.key(part);
            }
        }
        let id = format!("{:032x}", rand::random::<u128>());
        invocation.arg(rates.len()).arg(&id).arg(micros(hold_for));
        for r in rates {
            invocation.arg(r.rate.per_minute.max(1)).arg(r.units);
        }
        for a in asks {
            invocation
                .arg(int(a.ask.limit))
                .arg(a.ttl_secs)
                .arg(int(a.ask.amount));
        }
        let reply: Vec<redis::Value> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let text = |i: usize| match reply.get(i) {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::Int(n)) => n.to_string(),
            _ => String::new(),
        };
        let index = match reply.first() {
            Some(redis::Value::Int(i)) => *i,
            _ => 0,
        };
        let span = |i: usize| Duration::from_micros(text(i).parse().unwrap_or(0));
        if index == 0 {
            let standings = rates
                .iter()
                .enumerate()
                .map(|(i, r)| standing(r.rate, span(i + 1)))
                .collect();
            return Ok(Ok(Admitted {
                reservation: SharedReservation { keys, id },
                standings,
            }));
        }
        if index < 0 {
            let i = usize::try_from(-index).unwrap_or(1).min(rates.len().max(1)) - 1;
            let rate = rates.get(i).map_or(Rate { per_minute: 1 }, |r| r.rate);
            return Ok(Err(Refusal::Rate {
                index: i,
                retry_after: span(1),
                standing: standing(rate, span(2)),
            }));
        }
        let b = usize::try_from(index).unwrap_or(1).min(asks.len().max(1)) - 1;
        let ask = &asks[b].ask;
        Ok(Err(Refusal::Budget(BudgetExceeded {
            name: ask.name.to_owned(),
            limit: ask.limit,
            spent: usd(&text(1)),
            reserved: usd(&text(2)),
        })))
    }

    /// Releases `reservation` (if any) and adds to each budget it held what `actual` says
    /// (by the budget's index in the asks: the cost or the tokens), and moves token buckets by
    /// what the provider reported against the estimate: one script, one round trip.
    pub async fn settle(
        &self,
        reservation: Option<SharedReservation>,
        actual: impl Fn(usize) -> Usd,
        adjustments: &[RateAdjustment],
    ) -> Result<(), RedisBudgetError> {
        let held = reservation.filter(|r| !r.keys.is_empty());
        let moved: Vec<&RateAdjustment> = adjustments.iter().filter(|a| a.delta != 0).collect();
        if held.is_none() && moved.is_empty() {
            return Ok(());
        }
        let budgets = held.as_ref().map_or(0, |r| r.keys.len());
        // EVAL, not EVALSHA: off the request path, and never missing after a Redis restart.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SETTLE).arg(budgets * 3 + moved.len());
        if let Some(r) = &held {
            for (k, _) in &r.keys {
                for part in Self::hold_keys(k) {
                    cmd.arg(part);
                }
            }
        }
        for a in &moved {
            cmd.arg(self.rate_key(&a.bucket));
        }
        cmd.arg(budgets);
        match &held {
            Some(r) => {
                cmd.arg(&r.id);
                for (i, (_, amount)) in r.keys.iter().enumerate() {
                    cmd.arg(-int(*amount)).arg(int(actual(i)));
                }
            }
            None => {
                cmd.arg("");
            }
        }
        for a in &moved {
            cmd.arg(a.rate.per_minute.max(1)).arg(a.delta);
        }
        cmd.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// What `name` spent and has reserved in the period starting at `period_start`.
    pub async fn usage(
        &self,
        name: &str,
        period_start: i64,
    ) -> Result<(Usd, Usd), RedisBudgetError> {
        let (spent, held): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(self.key(name, period_start))
            .arg("s")
            .arg("r")
            .query_async(&mut self.conn.clone())
            .await?;
        let pos = |v: Option<i64>| Usd::from_picos(u64::try_from(v.unwrap_or(0)).unwrap_or(0));
        Ok((pos(spent), pos(held)))
    }
}
