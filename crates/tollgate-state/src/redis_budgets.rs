//! Budgets shared by several gateways: the same reserve-then-settle as [`crate::Budgets`],
//! with the counters in Redis.
//!
//! A budget's period is one hash, `{prefix}:budget:{name}:{period_start}`, with `s` (spent)
//! and `r` (reserved) in picodollars. Reserving runs one Lua script over every budget that
//! applies, so the check and the increment are one atomic step across all gateways: one
//! round trip on the request path. Settling is one `MULTI` of `HINCRBY`s after the answer.
//! Periods other than `total` expire a day after they end.

use crate::spend::{BudgetAsk, BudgetExceeded};
use redis::aio::ConnectionManager;
use std::time::Duration;
use tollgate_types::Usd;

/// Why the shared counters could not be used.
#[derive(Debug, thiserror::Error)]
#[error("budget counters in Redis: {0}")]
pub struct RedisBudgetError(#[from] redis::RedisError);

/// Checks every budget, then reserves on all of them or none. Amounts are compared as Lua
/// numbers (doubles): exact up to about $9,000 per counter, and within picodollars above.
const RESERVE: &str = r"
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local spent = tonumber(redis.call('HGET', key, 's') or '0')
  local held = tonumber(redis.call('HGET', key, 'r') or '0')
  if spent + held + amount > tonumber(ARGV[2 * i]) then
    return {i, tostring(spent), tostring(held)}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'r', ARGV[1])
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return {0}
";

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
    keys: Vec<String>,
    amount: Usd,
}

/// The shared counters.
#[derive(Clone)]
pub struct RedisBudgets {
    conn: ConnectionManager,
    prefix: String,
    reserve: redis::Script,
}

impl std::fmt::Debug for RedisBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgets")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
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
            reserve: redis::Script::new(RESERVE),
        })
    }

    fn key(&self, name: &str, period_start: i64) -> String {
        format!("{}:budget:{name}:{period_start}", self.prefix)
    }

    /// Reserves `amount` against every budget in `asks`, or none of them; `Ok(Err(_))` names
    /// the first budget without room.
    pub async fn reserve(
        &self,
        asks: &[SharedAsk<'_>],
        amount: Usd,
    ) -> Result<Result<SharedReservation, BudgetExceeded>, RedisBudgetError> {
        let keys: Vec<String> = asks
            .iter()
            .map(|a| self.key(a.ask.name, a.ask.period_start))
            .collect();
        let mut invocation = self.reserve.prepare_invoke();
        for k in &keys {
            invocation.key(k);
        }
        invocation.arg(int(amount));
        for a in asks {
            invocation.arg(int(a.ask.limit)).arg(a.ttl_secs);
        }
        let reply: Vec<redis::Value> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let index = match reply.first() {
            Some(redis::Value::Int(i)) => usize::try_from(*i).unwrap_or(0),
            _ => 0,
        };
        if index == 0 {
            return Ok(Ok(SharedReservation { keys, amount }));
        }
        let text = |i: usize| match reply.get(i) {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        let ask = &asks[index.min(asks.len()) - 1].ask;
        Ok(Err(BudgetExceeded {
            name: ask.name.to_owned(),
            limit: ask.limit,
            spent: usd(&text(1)),
            reserved: usd(&text(2)),
        }))
    }

    /// Releases `reservation` and adds `actual` to each budget it held.
    pub async fn settle(
        &self,
        reservation: SharedReservation,
        actual: Usd,
    ) -> Result<(), RedisBudgetError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for k in &reservation.keys {
            pipe.hincr(k, "r", -int(reservation.amount))
                .ignore()
                .hincr(k, "s", int(actual))
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
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
