//! What requests may consume, on the request path: rate limits admit a request or refuse it
//! with 429; budgets reserve its worst case before the first attempt; when it ends, both are
//! settled with what it actually used, and its ledger entry is queued for the store.

use crate::context::RequestCtx;
use crate::live::LiveState;
use crate::llm::Payload;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tollgate_config::{Per, Target};
use tollgate_state::store::{LedgerEntry, Store, StoreError};
use tollgate_state::{BudgetAsk, Budgets, Rate, RateLimits, Standing};
use tollgate_types::{ApiError, ErrorKind, Usage, Usd};

/// Ledger entries waiting for the store; beyond this many, new ones are dropped and counted
/// (the budget counters stay exact; only the durable copy lags).
const LEDGER_QUEUE: usize = 100_000;
/// Entries written per transaction at most.
const LEDGER_BATCH: usize = 512;

/// Budget counters, rate-limit buckets, and the way to the durable store. Outlives reloads.
#[derive(Debug, Default)]
pub struct Spend {
    /// Every budget's counters.
    pub budgets: Budgets,
    /// Every rate limit's buckets.
    pub rates: RateLimits,
    /// Admissions so far, to sweep idle buckets now and then.
    admissions: AtomicU64,
    ledger: Option<mpsc::Sender<LedgerEntry>>,
}

/// Idle rate-limit buckets are swept every this many admissions.
const SWEEP_EVERY: u64 = 4096;

/// A token bucket a request took its estimate from, settled with its actual tokens.
#[derive(Debug)]
pub struct TokenCharge {
    bucket: String,
    rate: Rate,
    estimated: u64,
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Spend {
    /// Counters only, and no store: what a config without budgets needs.
    pub fn in_memory() -> Spend {
        Spend::default()
    }

    /// Opens the store in `dir`, restores every budget's spend from it, and returns the
    /// counters with the service that writes the ledger. Runs before the server starts.
    pub fn open(dir: &std::path::Path) -> Result<(Spend, LedgerService), StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        let budgets = Budgets::default();
        runtime.block_on(async {
            let store = Store::open(dir).await?;
            for (name, period_start, spent) in store.load_spend().await? {
                budgets.restore(&name, period_start, spent);
            }
            store.close().await;
            Ok::<(), StoreError>(())
        })?;
        let (tx, rx) = mpsc::channel(LEDGER_QUEUE);
        let service = LedgerService {
            dir: dir.to_owned(),
            queue: Mutex::new(Some(rx)),
        };
        Ok((
            Spend {
                budgets,
                ledger: Some(tx),
                ..Spend::default()
            },
            service,
        ))
    }

    /// Admits the request under every rate limit that applies, or refuses it with 429 and
    /// `retry-after`. Requests count 1; tokens count an estimate of the prompt (a quarter of
    /// the body's bytes) now, and are settled with the reported tokens when the request ends.
    pub fn admit(&self, ctx: &mut RequestCtx, user: Option<&str>) -> Result<(), ApiError> {
        let state = ctx.state.clone();
        let rules = &state.config.rate_limits;
        let Some(model) = ctx.model.clone() else {
            return Ok(());
        };
        if rules.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        if self
            .admissions
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.rates.sweep(now);
        }
        let estimated = u64::try_from(ctx.request_bytes / 4 + 1).unwrap_or(u64::MAX);
        let mut taken: Vec<(String, Rate, u64, bool)> = Vec::new();
        let (mut requests, mut tokens): (Option<Standing>, Option<Standing>) = (None, None);
        let key = ctx.key_name.as_deref();
        let tenant = ctx.tenant.as_deref();
        for rule in rules.iter().filter(|r| r.applies(key, tenant, &model)) {
            let entity = match rule.per {
                None => Some("*"),
                Some(Per::Key) => key,
                Some(Per::Tenant) => tenant,
                Some(Per::User) => user,
                Some(Per::Model) => Some(model.as_str()),
            };
            // A per-user rule does not limit requests that name no user.
            let Some(entity) = entity else { continue };
            for (is_tokens, per_minute, n) in [(false, rule.rpm, 1), (true, rule.tpm, estimated)] {
                let Some(per_minute) = per_minute else {
                    continue;
                };
                let rate = Rate { per_minute };
                let kind = if is_tokens { "tpm" } else { "rpm" };
                let bucket = format!("{kind}|{}|{entity}", rule.name);
                match self.rates.take(&bucket, rate, n, now) {
                    Ok(standing) => {
                        let tightest = if is_tokens {
                            &mut tokens
                        } else {
                            &mut requests
                        };
                        if tightest.is_none_or(|t| standing.remaining < t.remaining) {
                            *tightest = Some(standing);
                        }
                        taken.push((bucket, rate, n, is_tokens));
                    }
                    Err(limited) => {
                        // All or nothing: give back what this request already took.
                        for (bucket, rate, n, _) in &taken {
                            self.rates.adjust(
                                bucket,
                                *rate,
                                -i64::try_from(*n).unwrap_or(i64::MAX),
                                now,
                            );
                        }
                        let what = if is_tokens { "tokens" } else { "requests" };
                        let secs = limited.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                        return Err(ApiError::new(
                            ErrorKind::RateLimited,
                            format!(
                                "rate limit {:?} reached: {per_minute} {what} per minute; retry in {secs} s",
                                rule.name
                            ),
                        )
                        .with_code("rate_limit_exceeded")
                        .with_retry_after(Some(secs)));
                    }
                }
            }
        }
        ctx.rate_headers = rate_headers(requests, tokens);
        ctx.token_charges = taken
            .into_iter()
            .filter(|(_, _, _, is_tokens)| *is_tokens)
            .map(|(bucket, rate, estimated, _)| TokenCharge {
                bucket,
                rate,
                estimated,
            })
            .collect();
        Ok(())
    }

    /// Reserves the request's worst-case cost against every budget that applies to it, or
    /// refuses it. The worst case prices the whole request body as prompt tokens (a token is
    /// at least a byte) plus the output cap, at the priciest of its targets.
    pub fn reserve(
        &self,
        ctx: &mut RequestCtx,
        payload: &Payload,
        targets: &[Target],
    ) -> Result<(), ApiError> {
        let state = ctx.state.clone();
        let config = &state.config;
        let Some(model) = ctx.model.as_deref() else {
            return Ok(());
        };
        let now = unix_now();
        let asks: Vec<BudgetAsk<'_>> = config
            .budgets
            .iter()
            .filter(|b| b.applies(ctx.key_name.as_deref(), ctx.tenant.as_deref(), model))
            .map(|b| BudgetAsk {
                name: &b.name,
                limit: b.limit,
                period_start: b.period.start(now),
            })
            .collect();
        if asks.is_empty() {
            return Ok(());
        }
        let worst = Usage {
            input_tokens: u64::try_from(ctx.request_bytes).unwrap_or(u64::MAX),
            output_tokens: u64::from(
                payload
                    .output_cap()
                    .unwrap_or(config.spend.reserve_output_tokens),
            ),
            ..Usage::default()
        };
        let amount = worst_cost(&state, targets, &worst);
        match self.budgets.reserve(&asks, amount) {
            Ok(r) => {
                ctx.reservation = Some(r);
                Ok(())
            }
            Err(e) => Err(ApiError::new(
                ErrorKind::BudgetExceeded(config.spend.exceeded_status),
                format!(
                    "budget {:?} cannot cover this request: {} of {} USD spent, {} reserved; \
                     this request may cost up to {amount} USD",
                    e.name, e.spent, e.limit, e.reserved
                ),
            )
            .with_code("budget_exceeded")),
        }
    }

    /// The least room left in the budgets that apply to the request (for scripts' `ctx`).
    pub fn remaining(&self, ctx: &RequestCtx) -> Option<Usd> {
        let model = ctx.model.as_deref()?;
        let now = unix_now();
        ctx.state
            .config
            .budgets
            .iter()
            .filter(|b| b.applies(ctx.key_name.as_deref(), ctx.tenant.as_deref(), model))
            .map(|b| {
                let committed = self.budgets.committed(&b.name, b.period.start(now));
                b.limit.saturating_sub(committed)
            })
            .min()
    }

    /// Settles the request's token buckets and reservation with what it used and cost, and
    /// queues its ledger entry.
    pub fn settle(&self, ctx: &mut RequestCtx) {
        let now = Instant::now();
        for charge in ctx.token_charges.drain(..) {
            // Without reported usage the estimate stands.
            let actual = ctx.usage.map_or(charge.estimated, |u| {
                u.input_tokens.saturating_add(u.output_tokens)
            });
            let delta = i64::try_from(actual).unwrap_or(i64::MAX)
                - i64::try_from(charge.estimated).unwrap_or(i64::MAX);
            self.rates.adjust(&charge.bucket, charge.rate, delta, now);
        }
        let cost = ctx.cost.unwrap_or(Usd::ZERO);
        let charges = ctx
            .reservation
            .take()
            .map(|r| self.budgets.settle(r, cost))
            .unwrap_or_default();
        let Some(ledger) = &self.ledger else {
            return;
        };
        if !ctx.operation.is_llm() {
            return;
        }
        let usage = ctx.usage.unwrap_or_default();
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let entry = LedgerEntry {
            request_id: ctx.request_id.clone(),
            at_ms,
            key: ctx.key_name.clone(),
            tenant: ctx.tenant.clone(),
            model: ctx.model.clone().unwrap_or_default(),
            provider: ctx.served_by.as_ref().map(|(p, _)| p.clone()),
            upstream_model: ctx.served_by.as_ref().map(|(_, m)| m.clone()),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            cost,
            status: ctx.status,
            latency_ms: u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ttft_ms: ctx
                .ttft
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            charges,
        };
        if ledger.try_send(entry).is_err() {
            crate::metrics::record_ledger_dropped();
        }
    }

    /// Every budget's state with its configured limit, for `GET /admin/budgets`.
    pub fn report(&self, state: &LiveState) -> serde_json::Value {
        let snapshot = self.budgets.snapshot();
        let budgets: Vec<serde_json::Value> = state
            .config
            .budgets
            .iter()
            .map(|b| {
                let now = b.period.start(unix_now());
                let current = snapshot
                    .iter()
                    .find(|s| s.name == b.name && s.period_start == now);
                let (spent, reserved) =
                    current.map_or((Usd::ZERO, Usd::ZERO), |s| (s.spent, s.reserved));
                serde_json::json!({
                    "name": b.name,
                    "period": b.period.name(),
                    "period_start": now,
                    "limit_usd": b.limit.to_string(),
                    "spent_usd": spent.to_string(),
                    "reserved_usd": reserved.to_string(),
                    "remaining_usd": b.limit.saturating_sub(spent).saturating_sub(reserved).to_string(),
                })
            })
            .collect();
        serde_json::json!({ "budgets": budgets })
    }
}

/// OpenAI's `x-ratelimit-*` headers for the tightest request and token buckets.
fn rate_headers(
    requests: Option<Standing>,
    tokens: Option<Standing>,
) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    let reset = |d: std::time::Duration| format!("{:.3}s", d.as_secs_f64());
    if let Some(s) = requests {
        h.push(("x-ratelimit-limit-requests", s.limit.to_string()));
        h.push(("x-ratelimit-remaining-requests", s.remaining.to_string()));
        h.push(("x-ratelimit-reset-requests", reset(s.reset)));
    }
    if let Some(s) = tokens {
        h.push(("x-ratelimit-limit-tokens", s.limit.to_string()));
        h.push(("x-ratelimit-remaining-tokens", s.remaining.to_string()));
        h.push(("x-ratelimit-reset-tokens", reset(s.reset)));
    }
    h
}

/// The most the request can cost on any of its targets; unpriced targets cost nothing.
fn worst_cost(state: &LiveState, targets: &[Target], worst: &Usage) -> Usd {
    targets
        .iter()
        .filter_map(|t| state.cost(&t.provider, &t.model, worst))
        .max()
        .unwrap_or(Usd::ZERO)
}

/// Writes queued ledger entries to the store in batches, on Pingora's background runtime.
#[derive(Debug)]
pub struct LedgerService {
    dir: std::path::PathBuf,
    queue: Mutex<Option<mpsc::Receiver<LedgerEntry>>>,
}

#[async_trait]
impl BackgroundService for LedgerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.queue.lock().ok().and_then(|mut q| q.take()) else {
            return;
        };
        let store = match Store::open(&self.dir).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "The spend store cannot be opened: the ledger is not written.");
                return;
            }
        };
        let mut batch = Vec::with_capacity(LEDGER_BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, LEDGER_BATCH) => {
                    if n == 0 {
                        break; // every sender is gone
                    }
                    write(&store, &mut batch).await;
                }
                _ = shutdown.changed() => {
                    // Write what the last requests queued, then stop.
                    while let Ok(entry) = rx.try_recv() {
                        batch.push(entry);
                        if batch.len() == LEDGER_BATCH {
                            write(&store, &mut batch).await;
                        }
                    }
                    write(&store, &mut batch).await;
                    break;
                }
            }
        }
        store.close().await;
    }
}

async fn write(store: &Store, batch: &mut Vec<LedgerEntry>) {
    if let Err(e) = store.write(batch).await {
        tracing::error!(error = %e, entries = batch.len(), "Ledger batch not written.");
    }
    batch.clear();
}
