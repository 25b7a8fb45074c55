//! Budgets on the request path: reserve the worst case before the first attempt, settle the
//! actual cost when the request ends, and queue its ledger entry for the store.

use crate::context::RequestCtx;
use crate::live::LiveState;
use crate::llm::Payload;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tollgate_config::Target;
use tollgate_state::store::{LedgerEntry, Store, StoreError};
use tollgate_state::{BudgetAsk, Budgets};
use tollgate_types::{ApiError, ErrorKind, Usage, Usd};

/// Ledger entries waiting for the store; beyond this many, new ones are dropped and counted
/// (the budget counters stay exact; only the durable copy lags).
const LEDGER_QUEUE: usize = 100_000;
/// Entries written per transaction at most.
const LEDGER_BATCH: usize = 512;

/// Budget counters and the way to the durable store. Outlives reloads.
#[derive(Debug, Default)]
pub struct Spend {
    /// Every budget's counters.
    pub budgets: Budgets,
    ledger: Option<mpsc::Sender<LedgerEntry>>,
}

fn unix_now() -> i64 {
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
            },
            service,
        ))
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

    /// Settles the request's reservation with what it cost, and queues its ledger entry.
    pub fn settle(&self, ctx: &mut RequestCtx) {
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
