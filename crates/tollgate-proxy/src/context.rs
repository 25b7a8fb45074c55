//! Per-request state (`CTX` in Pingora's terms).

use crate::live::LiveState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_types::Usage;

/// Everything one request accumulates on its way through the pipeline.
pub struct RequestCtx {
    /// Our request id, echoed in `x-request-id`.
    pub request_id: String,
    /// When the request arrived.
    pub started: Instant,
    /// The config version this request runs on, start to end.
    pub state: Arc<LiveState>,
    /// `chat`, `embeddings`, or `none` for non-LLM routes.
    pub operation: &'static str,
    /// The configured alias that was asked for, once known to exist.
    pub model: Option<String>,
    /// The tenant of the caller's key.
    pub tenant: Option<String>,
    /// Provider and upstream model that answered.
    pub served_by: Option<(String, String)>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Status sent to the client.
    pub status: u16,
    /// Token usage reported by the provider.
    pub usage: Option<Usage>,
    /// Time to first token, for streams.
    pub ttft: Option<Duration>,
    /// What went wrong, for the request log.
    pub error: Option<String>,
}

impl RequestCtx {
    /// A fresh context on `state`.
    pub fn new(state: Arc<LiveState>) -> Self {
        RequestCtx {
            request_id: uuid::Uuid::now_v7().simple().to_string(),
            started: Instant::now(),
            state,
            operation: "none",
            model: None,
            tenant: None,
            served_by: None,
            attempts: 0,
            status: 0,
            usage: None,
            ttft: None,
            error: None,
        }
    }
}
