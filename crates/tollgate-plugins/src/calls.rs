//! The hook calls of a [`Plugin`]: each takes an instance, arms its deadline, calls within
//! it, and settles (the instance back to the pool after a success, dropped after a failure).

use crate::plugin::{HookError, Plugin, Warm, bounded};
use crate::types::{
    ChunkVerdict, Request, Response, ResponseVerdict, StreamState, Target, Verdict,
};

impl Plugin {
    /// Calls `on-request`.
    pub async fn on_request(&self, request_id: &str, req: &Request) -> Result<Verdict, HookError> {
        let mut w = self.take_counted(request_id).await?;
        let hooks = w.bindings.tollgate_plugin_hooks();
        let r = bounded(
            self.config.timeout,
            hooks.call_on_request(&mut w.store, req),
        )
        .await;
        self.settle(w, r)
    }

    /// Calls `on-response`.
    pub async fn on_response(
        &self,
        request_id: &str,
        req: &Request,
        resp: &Response,
    ) -> Result<ResponseVerdict, HookError> {
        let mut w = self.take_counted(request_id).await?;
        let hooks = w.bindings.tollgate_plugin_hooks();
        let r = bounded(
            self.config.timeout,
            hooks.call_on_response(&mut w.store, req, resp),
        )
        .await;
        self.settle(w, r)
    }

    /// Calls `on-chunk`.
    pub async fn on_chunk(
        &self,
        request_id: &str,
        req: &Request,
        chunk: &str,
        state: &StreamState,
    ) -> Result<ChunkVerdict, HookError> {
        let mut w = self.take_counted(request_id).await?;
        let hooks = w.bindings.tollgate_plugin_hooks();
        let r = bounded(
            self.config.timeout,
            hooks.call_on_chunk(&mut w.store, req, chunk, state),
        )
        .await;
        self.settle(w, r)
    }

    /// Calls `score`; a score outside 0..=1 (or NaN) is clamped into it.
    pub async fn score(
        &self,
        request_id: &str,
        req: &Request,
        resp: &Response,
    ) -> Result<f32, HookError> {
        let mut w = self.take_counted(request_id).await?;
        let hooks = w.bindings.tollgate_plugin_hooks();
        let r = bounded(
            self.config.timeout,
            hooks.call_score(&mut w.store, req, resp),
        )
        .await;
        self.settle(w, r)
            .map(|s| if s.is_nan() { 0.0 } else { s.clamp(0.0, 1.0) })
    }

    /// Calls `route`.
    pub async fn route(
        &self,
        request_id: &str,
        req: &Request,
        candidates: &[Target],
    ) -> Result<Option<Vec<Target>>, HookError> {
        let mut w = self.take_counted(request_id).await?;
        let hooks = w.bindings.tollgate_plugin_hooks();
        let r = bounded(
            self.config.timeout,
            hooks.call_route(&mut w.store, req, candidates),
        )
        .await;
        self.settle(w, r)
    }

    async fn take_counted(&self, request_id: &str) -> Result<Warm, HookError> {
        self.calls.increment(1);
        if let Err(e) = self.check_rest() {
            self.record_failure(request_id, &e);
            return Err(e);
        }
        match self.take(request_id).await {
            Ok(w) => Ok(w),
            Err(e) => {
                self.record_failure(request_id, &e);
                Err(e)
            }
        }
    }
}
