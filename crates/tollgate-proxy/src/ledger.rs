//! The ledger: one entry per LLM request, queued on the request path and written to the
//! store in batches by a background service.

use crate::context::RequestCtx;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tollgate_state::Charge;
use tollgate_state::store::{LedgerEntry, Location, Store};
use tollgate_types::Usd;

/// Ledger entries waiting for the store; beyond this many, new ones are dropped and counted
/// (the budget counters stay exact; only the durable copy lags).
pub(crate) const LEDGER_QUEUE: usize = 100_000;
/// Entries written per transaction at most.
const LEDGER_BATCH: usize = 512;
/// How long the first entry of a batch waits for others.
const LEDGER_LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// The ledger entry of a finished request.
pub(crate) fn entry(ctx: &RequestCtx, cost: Usd, charges: Vec<Charge>) -> LedgerEntry {
    let usage = ctx.usage.unwrap_or_default();
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    LedgerEntry {
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
        estimated: ctx.usage_estimated,
        team: ctx.team.clone(),
        user: ctx.user.clone(),
        session: ctx.session.clone(),
        tags: (!ctx.tags.is_empty()).then(|| ctx.tags.join(",")),
        // Kept only when there is more to say than `provider` and `upstream_model`: a failed
        // attempt (most requests have one attempt that answered; this keeps their rows small).
        attempts: ctx
            .attempt_log
            .iter()
            .any(|a| a.outcome != "ok")
            .then(|| serde_json::to_string(&ctx.attempt_log).unwrap_or_default()),
        charges,
        cascade: ctx
            .cascade
            .as_ref()
            .map(|c| c.ledger_json(ctx.cost, ctx.served_by.as_ref())),
        baseline: ctx.cascade.as_ref().and_then(|c| c.baseline(ctx.cost)),
    }
}

/// A new service and the queue that feeds it.
pub(crate) fn service(location: Location) -> (mpsc::Sender<LedgerEntry>, LedgerService) {
    let (tx, rx) = mpsc::channel(LEDGER_QUEUE);
    let service = LedgerService {
        location,
        queue: Mutex::new(Some(rx)),
    };
    (tx, service)
}

/// Writes queued ledger entries to the store in batches, on Pingora's background runtime.
#[derive(Debug)]
pub struct LedgerService {
    location: Location,
    queue: Mutex<Option<mpsc::Receiver<LedgerEntry>>>,
}

#[async_trait]
impl BackgroundService for LedgerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.queue.lock().ok().and_then(|mut q| q.take()) else {
            return;
        };
        let store = match Store::open_at(&self.location).await {
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
                    // Let a batch gather: one transaction per interval, not per request, is
                    // what keeps the store's CPU off the gateway's per-request cost.
                    if batch.len() < LEDGER_BATCH {
                        tokio::time::sleep(LEDGER_LINGER).await;
                        while batch.len() < LEDGER_BATCH {
                            match rx.try_recv() {
                                Ok(entry) => batch.push(entry),
                                Err(_) => break,
                            }
                        }
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

/// Attempts per batch; the queue fills meanwhile (and drops, counted, once full).
const WRITE_ATTEMPTS: u32 = 4;

/// Writes `batch`, retrying a failed write (a busy SQLite file, a PostgreSQL failover) with
/// backoff before giving it up. The batch carries the budgets' spend as well as the ledger,
/// so what is lost here is also missing from the counters restored at the next start.
async fn write(store: &Store, batch: &mut Vec<LedgerEntry>) {
    if batch.is_empty() {
        return;
    }
    let mut delay = std::time::Duration::from_millis(250);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.write(batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, entries = batch.len(), attempt,
                    "Ledger batch not written; retrying.");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(error = %e, entries = batch.len(),
                    "Ledger batch dropped after retries.");
            }
        }
    }
    for _ in batch.drain(..) {
        crate::metrics::record_ledger_dropped();
    }
}
