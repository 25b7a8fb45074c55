//! What requests may consume, on the request path. Budgets reserve a request's worst case
//! before its first attempt and settle what it cost when it ends, in this process's counters
//! or, with `[shared] redis_url`, in Redis for every gateway at once; rate limits live in
//! `limits.rs`, the ledger in `ledger.rs`.

use crate::context::RequestCtx;
use crate::limits::RateAsk;
use crate::live::LiveState;
use crate::llm::Payload;
use secrecy::ExposeSecret as _;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{OnceCell, mpsc};
use tollgate_config::{BudgetConfig, BudgetUnit, Config, Per, Target};
use tollgate_state::redis_budgets::{
    RedisBudgets, Refusal, SharedAsk, SharedRate, SharedReservation,
};
use tollgate_state::store::{LedgerEntry, Location, Store, StoreError};
use tollgate_state::{BudgetAsk, BudgetExceeded, Budgets, Charge, RateLimits, Reservation};
use tollgate_types::{ApiError, ErrorKind, Usage, Usd};

/// Budget counters, rate-limit buckets, keys made through the admin API, and the way to the
/// durable store. Outlives reloads.
#[derive(Debug, Default)]
pub struct Spend {
    /// Keys made through the admin API.
    pub keys: crate::keys::StoredKeys,
    /// The durable store, when the config has one (budgets, an admin key or alerts).
    pub location: Option<Location>,
    /// Budget counters charged since the alerts last looked, when alerts are on.
    pub(crate) charged: Option<std::sync::Mutex<std::collections::HashMap<String, ChargedBudget>>>,
    /// This gateway's budget counters (all of them, or the fallback when Redis fails).
    pub budgets: Budgets,
    /// Every rate limit's buckets.
    pub rates: RateLimits,
    /// Admissions so far, to sweep idle buckets now and then.
    pub(crate) admissions: AtomicU64,
    /// Where shared counters live, when `[shared] redis_url` is set.
    shared: Option<SharedTarget>,
    ledger: Option<mpsc::Sender<LedgerEntry>>,
}

/// The Redis of `[shared]`, connected on first use (on the runtime that serves requests).
#[derive(Debug)]
struct SharedTarget {
    url: secrecy::SecretString,
    prefix: String,
    conn: OnceCell<RedisBudgets>,
    /// When connecting last failed: requests do not queue behind a new attempt for a while.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A budget counter that was charged, with what the alerts need to judge it.
#[derive(Debug, Clone)]
pub(crate) struct ChargedBudget {
    /// The budget's name (the counter's is `name|entity` when it is counted per entity).
    pub budget: String,
    /// Its cap.
    pub limit: Usd,
    /// Its period.
    pub period: tollgate_config::Period,
    /// What it counts.
    pub unit: BudgetUnit,
    /// It refused a request: it is as good as spent.
    pub refused: bool,
}

/// After a failed connection, how long requests fail fast before one tries again.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// What a request holds against its budgets until it settles.
#[derive(Debug)]
pub enum Held {
    /// In this gateway's counters, with each counter's unit.
    Local(Reservation, Vec<(String, BudgetUnit)>),
    /// In Redis, with the budgets' counters, periods (for the ledger) and units.
    Shared(SharedReservation, Vec<(String, i64, BudgetUnit)>),
}

/// What a request may cost or use at most, or did: in dollars and in tokens.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Amounts {
    cost: Usd,
    tokens: u64,
}

impl Amounts {
    /// The amount in a budget's unit (tokens as a token counter holds them).
    fn of(self, unit: BudgetUnit) -> Usd {
        match unit {
            BudgetUnit::Usd => self.cost,
            BudgetUnit::Tokens => Usd::from_picos(self.tokens),
        }
    }

    /// What the request used, once known.
    fn actual(ctx: &RequestCtx) -> Amounts {
        Amounts {
            cost: ctx.cost.unwrap_or(Usd::ZERO),
            tokens: ctx
                .usage
                .map_or(0, |u| u.input_tokens.saturating_add(u.output_tokens)),
        }
    }
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Who or what the request is, for a budget or rate limit counted `per` it.
pub(crate) fn entity<'a>(per: Per, ctx: &'a RequestCtx, model: &'a str) -> Option<&'a str> {
    match per {
        Per::Key => ctx.key_name.as_deref(),
        Per::Team => ctx.team.as_deref(),
        Per::Tenant => ctx.tenant.as_deref(),
        Per::User => ctx.user.as_deref(),
        Per::Session => ctx.session.as_deref(),
        Per::Model => Some(model),
    }
}

/// The budgets that apply to the request (the config's and its key's own), each with its
/// counter's name: the budget's own, or `name|entity` for a budget counted per key, user, ...
/// (a request that names no user is not under a per-user budget).
fn applicable<'a>(
    ctx: &RequestCtx,
    config: &'a Config,
    key_budget: Option<&'a BudgetConfig>,
) -> Vec<(&'a BudgetConfig, String)> {
    let Some(model) = ctx.model.as_deref() else {
        return Vec::new();
    };
    let caller = ctx.caller();
    config
        .budgets
        .iter()
        .filter(|b| b.applies(caller, model))
        .chain(key_budget)
        .filter_map(|b| match b.per {
            None => Some((b, b.name.clone())),
            Some(per) => entity(per, ctx, model).map(|e| (b, format!("{}|{e}", b.name))),
        })
        .collect()
}

fn ask<'a>(b: &BudgetConfig, counter: &'a str, now: i64, worst: Amounts) -> BudgetAsk<'a> {
    BudgetAsk {
        name: counter,
        limit: b.limit,
        period_start: b.period.start(now),
        amount: worst.of(b.unit),
    }
}

impl Spend {
    /// Counters only, and no store: what a config without budgets needs.
    pub fn in_memory() -> Spend {
        Spend::default()
    }

    /// The counters for `config`: shared through Redis when `[shared] redis_url` is set. With
    /// budgets, an admin key or alerts, the store is opened (SQLite, or PostgreSQL with
    /// `[shared] database_url`), this gateway's counters and the stored keys read from it, and
    /// the ledger service returned. Runs before the server starts.
    pub fn for_config(
        config: &Config,
    ) -> Result<(Spend, Option<crate::ledger::LedgerService>), StoreError> {
        let mut spend = Spend {
            charged: config
                .alerts
                .webhook
                .is_some()
                .then(std::sync::Mutex::default),
            shared: config.shared.redis_url.as_ref().map(|url| SharedTarget {
                url: url.clone(),
                prefix: config.shared.prefix.clone(),
                conn: OnceCell::new(),
                failed_at: std::sync::Mutex::new(None),
            }),
            ..Spend::default()
        };
        // A store that already holds keys made through the admin API is opened even when the
        // admin key has since been removed: those keys must keep gating requests.
        let needs_store = !config.budgets.is_empty()
            || config.server.admin_key.is_some()
            || config.alerts.webhook.is_some()
            || config.shared.database_url.is_some()
            || config.spend.data_dir.join("spend.db").exists();
        if !needs_store {
            return Ok((spend, None));
        }
        let location = match &config.shared.database_url {
            Some(url) => Location::Postgres(url.expose_secret().to_owned()),
            None => Location::Sqlite(config.spend.data_dir.clone()),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StoreError::Dir {
                path: config.spend.data_dir.clone(),
                source,
            })?;
        runtime.block_on(async {
            let store = Store::open_at(&location).await?;
            for (name, period_start, spent) in store.load_spend().await? {
                spend.budgets.restore(&name, period_start, spent);
            }
            spend.keys.reload(&store).await?;
            store.close().await;
            Ok::<(), StoreError>(())
        })?;
        let (tx, service) = crate::ledger::service(location.clone());
        spend.ledger = Some(tx);
        spend.location = Some(location);
        Ok((spend, Some(service)))
    }

    async fn redis(&self) -> Option<Result<&RedisBudgets, String>> {
        let shared = self.shared.as_ref()?;
        if let Some(conn) = shared.conn.get() {
            return Some(Ok(conn));
        }
        let failed_at = *shared.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if failed_at.is_some_and(|at| at.elapsed() < RECONNECT_AFTER) {
            return Some(Err("Redis was unreachable moments ago".to_owned()));
        }
        let connected = shared
            .conn
            .get_or_try_init(|| RedisBudgets::connect(shared.url.expose_secret(), &shared.prefix))
            .await
            .map_err(|e| e.to_string());
        if connected.is_err() {
            *shared.failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(std::time::Instant::now());
        }
        Some(connected)
    }

    /// Admits the request under every rate limit and budget that applies to it, or refuses
    /// it (429 or 402): takes from its rate buckets and reserves its worst-case cost, on all
    /// of them or none. The worst case prices the whole request body as prompt tokens (a token
    /// is at least a byte) plus the output cap, at the priciest of its targets. With `[shared]
    /// redis_url` this is one Lua script in Redis: one round trip.
    pub async fn admit(
        &self,
        ctx: &mut RequestCtx,
        payload: &Payload,
        tiers: &[Vec<Target>],
        deadline: tokio::time::Instant,
    ) -> Result<(), ApiError> {
        let rates = self.rate_asks(ctx)?;
        let state = ctx.state.clone();
        let config = &state.config;
        let key_budget = ctx.key_budget.clone();
        let budgets = applicable(ctx, config, key_budget.as_deref());
        if budgets.is_empty() && rates.is_empty() {
            return Ok(());
        }
        let now = unix_now();
        let worst = if budgets.is_empty() {
            Amounts::default()
        } else {
            self.worst_case(ctx, payload, tiers)
        };
        let refused = |e: BudgetExceeded| {
            self.note_refused(&budgets, &e.name);
            let unit = budgets
                .iter()
                .find(|(_, counter)| *counter == e.name)
                .map_or(BudgetUnit::Usd, |(b, _)| b.unit);
            // The amounts may be a whole tenant's: they go to the log, not to the client.
            tracing::info!(budget = %e.name, unit = unit.name(), spent = %unit.show(e.spent),
                limit = %unit.show(e.limit), reserved = %unit.show(e.reserved),
                request_max = %unit.show(worst.of(unit)), "Budget refused a request.");
            ApiError::new(
                ErrorKind::BudgetExceeded(config.spend.exceeded_status),
                format!("budget {:?} cannot cover this request", e.name),
            )
            .with_code("budget_exceeded")
        };
        if let Some(redis) = self.redis().await {
            let asks: Vec<SharedAsk<'_>> = budgets
                .iter()
                .map(|(b, counter)| SharedAsk {
                    ask: ask(b, counter, now, worst),
                    ttl_secs: b.period.max_len_secs().map_or(0, |len| len + 86_400),
                })
                .collect();
            let shared_rates: Vec<SharedRate<'_>> = rates.iter().map(RateAsk::shared).collect();
            let outcome = match redis {
                Ok(redis) => redis
                    .admit(&shared_rates, &asks, hold_for(deadline))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Ok(admitted)) => {
                    crate::limits::admitted(ctx, &rates, &admitted.standings, true);
                    if !asks.is_empty() {
                        let periods = asks
                            .iter()
                            .zip(&budgets)
                            .map(|(a, (b, _))| (a.ask.name.to_owned(), a.ask.period_start, b.unit))
                            .collect();
                        ctx.reservation = Some(Held::Shared(admitted.reservation, periods));
                    }
                    return Ok(());
                }
                Ok(Err(Refusal::Budget(e))) => return Err(refused(e)),
                Ok(Err(Refusal::Rate {
                    index, retry_after, ..
                })) => {
                    // The script names one of the buckets it was given.
                    return Err(rates.get(index).map_or_else(
                        || ApiError::new(ErrorKind::RateLimited, "rate limit reached"),
                        |full| crate::limits::rate_limited(full, retry_after),
                    ));
                }
                Err(e) if config.spend.local_when_shared_fails => {
                    tracing::warn!(error = %e, "Shared limits unreachable: counting locally.");
                }
                Err(e) => {
                    tracing::error!(error = %e, "Shared limits unreachable: refusing.");
                    return Err(ApiError::new(
                        ErrorKind::Unavailable,
                        "the budget store is unavailable; try again shortly",
                    )
                    .with_code("budget_store_unavailable"));
                }
            }
        }
        self.take_local(ctx, &rates)?;
        if budgets.is_empty() {
            return Ok(());
        }
        let asks: Vec<BudgetAsk<'_>> = budgets
            .iter()
            .map(|(b, counter)| ask(b, counter, now, worst))
            .collect();
        match self.budgets.reserve(&asks) {
            Ok(held) => {
                let units = budgets
                    .iter()
                    .map(|(b, counter)| (counter.clone(), b.unit))
                    .collect();
                ctx.reservation = Some(Held::Local(held, units));
                Ok(())
            }
            Err(e) => {
                // All or nothing, as in Redis: the rate buckets get back what they gave.
                self.give_back_local(&rates);
                ctx.token_charges.clear();
                Err(refused(e))
            }
        }
    }

    /// The most the request can cost and use, each of its tiers (one, unless it cascades)
    /// at its priciest target; for a stream, also its budget guard.
    fn worst_case(
        &self,
        ctx: &mut RequestCtx,
        payload: &Payload,
        tiers: &[Vec<Target>],
    ) -> Amounts {
        let state = ctx.state.clone();
        let config = &state.config;
        // Without `max_tokens`, the most the targets' models can write, where the catalog
        // knows it (a complete answer cannot be cut short), else `reserve_output_tokens`.
        let per_answer = payload.output_cap().map_or_else(
            || longest_answer(&state, tiers, config.spend.reserve_output_tokens),
            u64::from,
        );
        let worst = Usage {
            input_tokens: u64::try_from(ctx.request_bytes).unwrap_or(u64::MAX),
            output_tokens: per_answer.saturating_mul(payload.choices()),
            ..Usage::default()
        };
        let amount = tiers
            .iter()
            .map(|t| worst_cost(&state, t, &worst))
            .fold(Usd::ZERO, Usd::saturating_add);
        let tokens_per_tier = worst.input_tokens.saturating_add(worst.output_tokens);
        if payload.is_stream() {
            let per_token = Usage {
                output_tokens: 1,
                ..Usage::default()
            };
            ctx.stream_guard = Some(StreamGuard {
                reserved_output_tokens: worst.output_tokens,
                output_price: tiers
                    .iter()
                    .map(|t| worst_cost(&state, t, &per_token))
                    .max()
                    .unwrap_or(Usd::ZERO),
                next_check: worst.output_tokens.saturating_add(1),
                status: config.spend.exceeded_status,
            });
        }
        Amounts {
            cost: amount,
            tokens: tokens_per_tier.saturating_mul(tiers.len().max(1) as u64),
        }
    }

    /// The least room left in the USD budgets that apply to the request (for scripts' `ctx`).
    pub async fn remaining(&self, ctx: &RequestCtx) -> Option<Usd> {
        self.remaining_in(ctx, BudgetUnit::Usd).await
    }

    /// The least room left in the budgets of `unit` that apply to the request.
    pub(crate) async fn remaining_in(&self, ctx: &RequestCtx, unit: BudgetUnit) -> Option<Usd> {
        let budgets = applicable(ctx, &ctx.state.config, ctx.key_budget.as_deref());
        let now = unix_now();
        let mut least: Option<Usd> = None;
        for (b, counter) in budgets.into_iter().filter(|(b, _)| b.unit == unit) {
            let (spent, held) = self.usage(&counter, b.period.start(now)).await;
            let left = b.limit.saturating_sub(spent).saturating_sub(held);
            least = Some(least.map_or(left, |l| l.min(left)));
        }
        least
    }

    /// What a budget spent and holds in a period, from wherever it is counted.
    async fn usage(&self, name: &str, period_start: i64) -> (Usd, Usd) {
        if let Some(Ok(redis)) = self.redis().await
            && let Ok(usage) = redis.usage(name, period_start).await
        {
            return usage;
        }
        // One counter looked up, not a snapshot of all: this runs per request for scripts.
        self.budgets.usage(name, period_start)
    }

    /// Settles the request's rate-limit buckets and reservation with what it used and cost,
    /// and queues its ledger entry.
    pub async fn settle(&self, ctx: &mut RequestCtx) {
        self.settle_budgets(ctx).await;
        let cost = ctx.cost.unwrap_or(Usd::ZERO);
        let charges = std::mem::take(&mut ctx.charges);
        if let Some(ledger) = &self.ledger
            && ctx.operation.is_llm()
            && ledger
                .try_send(crate::ledger::entry(ctx, cost, charges))
                .is_err()
        {
            crate::metrics::record_ledger_dropped();
        }
    }

    /// Releases the request's reservation and charges its cost, and settles its token
    /// buckets with the tokens it used, once. Complete answers do this before the client gets
    /// them, so a client's next request sees the budget settled.
    pub async fn settle_budgets(&self, ctx: &mut RequestCtx) {
        let actual = Amounts::actual(ctx);
        let shared_tokens = self.settle_tokens(ctx);
        let held = ctx.reservation.take();
        if held.is_some() {
            self.note_charged(ctx);
        }
        let (shared, periods) = match held {
            None if shared_tokens.is_empty() => return,
            None => (None, Vec::new()),
            Some(Held::Local(r, units)) => {
                let unit_of = |name: &str| {
                    units
                        .iter()
                        .find(|(counter, _)| counter == name)
                        .map_or(BudgetUnit::Usd, |(_, unit)| *unit)
                };
                ctx.charges = self.budgets.settle(r, |name| actual.of(unit_of(name)));
                return;
            }
            Some(Held::Shared(r, periods)) => (Some(r), periods),
        };
        match self.redis().await {
            Some(Ok(redis)) => {
                let settled = redis
                    .settle(
                        shared,
                        |i| actual.of(periods.get(i).map_or(BudgetUnit::Usd, |p| p.2)),
                        &shared_tokens,
                    )
                    .await;
                if let Err(e) = settled {
                    tracing::error!(error = %e, request_id = %ctx.request_id,
                        "A shared reservation or token bucket was not settled.");
                }
            }
            _ => tracing::error!(request_id = %ctx.request_id,
                "A shared reservation or token bucket was not settled: Redis is unreachable."),
        }
        ctx.charges = periods
            .into_iter()
            .map(|(name, period_start, unit)| Charge {
                name: name.into(),
                period_start,
                amount: actual.of(unit),
            })
            .collect();
    }

    /// Remembers the budget counters a request is charged to, for the alerts to look at.
    fn note_charged(&self, ctx: &RequestCtx) {
        let Some(charged) = &self.charged else {
            return;
        };
        let budgets = applicable(ctx, &ctx.state.config, ctx.key_budget.as_deref());
        let mut charged = charged.lock().unwrap_or_else(|e| e.into_inner());
        for (b, counter) in budgets {
            charged.entry(counter).or_insert_with(|| ChargedBudget {
                budget: b.name.clone(),
                limit: b.limit,
                period: b.period,
                unit: b.unit,
                refused: false,
            });
        }
    }

    /// Remembers that the budget counter `counter` refused a request, for the alerts.
    fn note_refused(&self, budgets: &[(&BudgetConfig, String)], counter: &str) {
        let Some(charged) = &self.charged else {
            return;
        };
        let Some((b, _)) = budgets.iter().find(|(_, c)| c == counter) else {
            return;
        };
        let mut charged = charged.lock().unwrap_or_else(|e| e.into_inner());
        charged.insert(
            counter.to_owned(),
            ChargedBudget {
                budget: b.name.clone(),
                limit: b.limit,
                period: b.period,
                unit: b.unit,
                refused: true,
            },
        );
    }

    /// The budget counters charged since the last call, emptied.
    pub(crate) fn take_charged(&self) -> std::collections::HashMap<String, ChargedBudget> {
        self.charged.as_ref().map_or_else(Default::default, |c| {
            std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Puts counters back for the alerts' next look (the store could not be asked).
    pub(crate) fn requeue_charged(
        &self,
        counters: std::collections::HashMap<String, ChargedBudget>,
    ) {
        let Some(charged) = &self.charged else {
            return;
        };
        let mut charged = charged.lock().unwrap_or_else(|e| e.into_inner());
        for (counter, b) in counters {
            let entry = charged.entry(counter).or_insert_with(|| b.clone());
            entry.refused |= b.refused;
        }
    }

    /// What a budget counter spent in the period that contains `now`.
    pub(crate) async fn spent(&self, counter: &str, period_start: i64) -> Usd {
        self.usage(counter, period_start).await.0
    }

    /// Every budget's state with its configured limit, for `GET /admin/budgets`.
    pub async fn report(&self, state: &LiveState) -> serde_json::Value {
        // `limit_usd`, `spent_usd`, ... or `limit_tokens`, `spent_tokens`, ...
        let row = |name: &str, unit: BudgetUnit, limit: Usd, spent: Usd, reserved: Usd| {
            let u = unit.name();
            let left = limit.saturating_sub(spent).saturating_sub(reserved);
            let mut row = serde_json::json!({ "name": name, "unit": u });
            row[format!("limit_{u}")] = unit.show(limit).into();
            row[format!("spent_{u}")] = unit.show(spent).into();
            row[format!("reserved_{u}")] = unit.show(reserved).into();
            row[format!("remaining_{u}")] = unit.show(left).into();
            row
        };
        let snapshot = self.budgets.snapshot();
        let mut budgets = Vec::new();
        for b in &state.config.budgets {
            let now = b.period.start(unix_now());
            let mut entry = if b.per.is_none() {
                let (spent, reserved) = self.usage(&b.name, now).await;
                row(&b.name, b.unit, b.limit, spent, reserved)
            } else {
                // One counter per key, user, ...: those this gateway has counted (with shared
                // budgets, the rest are in Redis only).
                let prefix = format!("{}|", b.name);
                let counters: Vec<serde_json::Value> = snapshot
                    .iter()
                    .filter(|c| c.period_start == now)
                    .filter_map(|c| {
                        let entity = c.name.strip_prefix(&prefix)?;
                        Some(row(entity, b.unit, b.limit, c.spent, c.reserved))
                    })
                    .collect();
                let mut entry =
                    serde_json::json!({ "name": b.name, "unit": b.unit.name(), "each": counters });
                entry[format!("limit_{}", b.unit.name())] = b.unit.show(b.limit).into();
                entry
            };
            entry["period"] = b.period.name().into();
            entry["period_start"] = now.into();
            budgets.push(entry);
        }
        for key in self.keys.all().values() {
            let Some(b) = &key.budget else { continue };
            let now = b.period.start(unix_now());
            let (spent, reserved) = self.usage(&b.name, now).await;
            let mut entry = row(&b.name, b.unit, b.limit, spent, reserved);
            entry["key"] = key.name.clone().into();
            entry["period"] = b.period.name().into();
            entry["period_start"] = now.into();
            budgets.push(entry);
        }
        serde_json::json!({ "budgets": budgets })
    }
}

/// A streaming request's budget guard: the output it reserved for, and what more costs.
#[derive(Debug)]
pub struct StreamGuard {
    reserved_output_tokens: u64,
    /// The priciest target's price of one output token (what the reservation assumed).
    output_price: Usd,
    /// Estimated output tokens at which to look at the budget again.
    next_check: u64,
    status: u16,
}

/// Output tokens between two looks at the budget once a stream is past its reservation.
const GUARD_STEP: u64 = 8;

/// `Some(error)` when a stream has run past the output its reservation covered (estimated
/// from the bytes it generated, four to a token) and its budgets have no room for the rest.
/// Concurrent streams past their reservations may each take the same room.
pub async fn over_budget(ctx: &mut RequestCtx) -> Option<ApiError> {
    let tokens = ctx.generated_bytes.div_ceil(4);
    let guard = ctx.stream_guard.as_mut()?;
    if tokens < guard.next_check {
        return None;
    }
    guard.next_check = tokens.saturating_add(GUARD_STEP);
    let past = tokens.saturating_sub(guard.reserved_output_tokens);
    let excess = guard.output_price.times(past);
    let status = guard.status;
    let spend = ctx.spend.clone()?;
    let refusal = |left: String| {
        ApiError::new(
            ErrorKind::BudgetExceeded(status),
            format!(
                "the budget ran out while streaming: this answer is past the output it reserved \
                 and {left} is left"
            ),
        )
        .with_code("budget_exceeded")
    };
    if let Some(left) = spend.remaining_in(ctx, BudgetUnit::Usd).await
        && left < excess
    {
        return Some(refusal(format!("{left} USD")));
    }
    let left = spend.remaining_in(ctx, BudgetUnit::Tokens).await?;
    (left < Usd::from_picos(past)).then(|| refusal(format!("{} tokens", left.picos())))
}

/// How long a shared reservation is held before other gateways may take it back: an hour
/// past the request's deadline. The deadline bounds the wait for an answer, not how long a
/// stream runs once it flows, so the margin is wide: it only matters for a gateway that died
/// without settling.
fn hold_for(deadline: tokio::time::Instant) -> std::time::Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
        + std::time::Duration::from_secs(3600)
}

/// The longest answer any target of any tier can give, from the catalog; `fallback` for a
/// target the catalog does not know.
fn longest_answer(state: &LiveState, tiers: &[Vec<Target>], fallback: u32) -> u64 {
    tiers
        .iter()
        .flatten()
        .map(|t| {
            state
                .provider(&t.provider)
                .and_then(|p| tollgate_config::catalog::lookup(p.config.kind, &t.model))
                .and_then(|c| c.max_output_tokens)
                .unwrap_or(u64::from(fallback))
        })
        .max()
        .unwrap_or(u64::from(fallback))
}

/// The most the request can cost on any of its targets; unpriced targets cost nothing.
fn worst_cost(state: &LiveState, targets: &[Target], worst: &Usage) -> Usd {
    targets
        .iter()
        .filter_map(|t| state.cost(&t.provider, &t.model, worst))
        .max()
        .unwrap_or(Usd::ZERO)
}
