//! Per-request state (`CTX` in Pingora's terms).

use crate::live::LiveState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_types::{ClientApi, Usage, Usd};

/// What a request does, as far as metrics and logs care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/embeddings`
    Embeddings,
    /// Health probes: not counted, so probes do not drown real traffic.
    Health,
    /// Anything else (model listing, rejected requests).
    Other,
}

impl Operation {
    /// The OTel `gen_ai.operation.name` value, or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
            Operation::Health => "health",
            Operation::Other => "none",
        }
    }

    /// Whether this is an LLM call (logged and measured as one).
    pub fn is_llm(self) -> bool {
        matches!(self, Operation::Chat | Operation::Embeddings)
    }
}

/// One upstream attempt, as the ledger keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRecord {
    /// The provider tried.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// `ok`, `server_error`, `timeout`, ... (the `outcome` label of
    /// `tollgate_upstream_attempts_total`).
    pub outcome: &'static str,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

/// What spend the answers before this one used (a repaired answer, a cascade's escalated
/// tiers and its judges): the request pays for them too.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prior {
    /// Their usage, summed.
    pub usage: Usage,
    /// Their cost, summed (`None` while none was priced).
    pub cost: Option<Usd>,
}

impl Prior {
    /// Adds one more answer's usage and cost (what is known of each).
    pub fn add(&mut self, usage: Option<Usage>, cost: Option<Usd>) {
        self.usage = self.usage + usage.unwrap_or_default();
        self.cost = match (self.cost, cost) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Everything one request accumulates on its way through the pipeline.
pub struct RequestCtx {
    /// Our request id, echoed in `x-request-id`.
    pub request_id: String,
    /// When the request arrived.
    pub started: Instant,
    /// The config version this request runs on, start to end.
    pub state: Arc<LiveState>,
    /// What kind of request this is.
    pub operation: Operation,
    /// The API the client called, which shapes answers and errors.
    pub client_api: ClientApi,
    /// A `/v1/messages` body as the client sent it, for Anthropic targets to receive whole;
    /// dropped when a routing script rewrites the request.
    pub messages_body: Option<bytes::Bytes>,
    /// The configured alias that was asked for, once known to exist.
    pub model: Option<String>,
    /// The name of the caller's key.
    pub key_name: Option<String>,
    /// The tenant of the caller's key.
    pub tenant: Option<String>,
    /// The team of the caller's key.
    pub team: Option<String>,
    /// The key's own budget (keys made through the admin API).
    pub key_budget: Option<Arc<tollgate_config::BudgetConfig>>,
    /// The key's own rate limit (keys made through the admin API).
    pub key_rate_limit: Option<Arc<tollgate_config::RateLimitConfig>>,
    /// The end user (`x-tollgate-user`, or the body's `user`).
    pub user: Option<String>,
    /// The session (`x-tollgate-session`).
    pub session: Option<String>,
    /// Tags from `x-tollgate-tags` and routing decisions.
    pub tags: Vec<String>,
    /// Provider and upstream model that answered.
    pub served_by: Option<(String, String)>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Each attempt's provider, upstream model, outcome and duration, for the ledger.
    pub attempt_log: Vec<AttemptRecord>,
    /// Status sent to the client.
    pub status: u16,
    /// Token usage reported by the provider.
    pub usage: Option<Usage>,
    /// What `usage` cost, once known and when the target has a price.
    pub cost: Option<Usd>,
    /// Size of the request body, the bound on its prompt tokens.
    pub request_bytes: usize,
    /// What the request holds against its budgets until it settles.
    pub reservation: Option<crate::spend::Held>,
    /// Token buckets charged an estimate, to settle with the actual tokens.
    pub token_charges: Vec<crate::limits::TokenCharge>,
    /// `x-ratelimit-*` headers for the answer.
    pub rate_headers: Vec<(&'static str, String)>,
    /// Bytes of content a stream has generated so far.
    pub generated_bytes: u64,
    /// `usage` is the gateway's estimate: the provider reported none.
    pub usage_estimated: bool,
    /// The request's budget guard while it streams.
    pub stream_guard: Option<crate::spend::StreamGuard>,
    /// The answer guardrails of a stream, with the text they carry over.
    pub stream_check: Option<crate::guard::StreamGuardrails>,
    /// The plugins' view of the request, kept for the hooks after `on-request`.
    pub plugin_view: Option<std::sync::Arc<tollgate_plugins::types::Request>>,
    /// A stream's `on-chunk` state.
    pub plugin_stream: Option<crate::plugins::PluginStream>,
    /// The `json_schema` guardrail's check of the answer.
    pub output_check: Option<crate::structured::OutputCheck>,
    /// An answer that failed its schema, to be sent back for repair.
    pub repair: Option<crate::structured::Repair>,
    /// Usage and cost of earlier answers this request pays for too (a repaired answer).
    pub prior: Option<Prior>,
    /// A cascade's earlier tier is being tried: its answer is kept, not sent.
    pub capturing: bool,
    /// The answer kept while `capturing`.
    pub captured: Option<crate::cascade::Captured>,
    /// The cascade's tiers so far, for the header, the ledger and the savings figure.
    pub cascade: Option<crate::cascade::Record>,
    /// What the request was charged, per budget, once settled (for the ledger).
    pub charges: Vec<tollgate_state::Charge>,
    /// Budgets and rate limits (outside the live state).
    pub spend: Option<std::sync::Arc<crate::spend::Spend>>,
    /// Time to first token, for streams.
    pub ttft: Option<Duration>,
    /// What went wrong, for the request log.
    pub error: Option<String>,
}

impl RequestCtx {
    /// Who made the request, as budgets and rate limits select it.
    pub fn caller(&self) -> tollgate_config::Caller<'_> {
        tollgate_config::Caller {
            key: self.key_name.as_deref(),
            team: self.team.as_deref(),
            tenant: self.tenant.as_deref(),
        }
    }

    /// Takes on the identity of the caller's key.
    pub fn identify_as(&mut self, key: tollgate_config::VirtualKey) {
        self.key_name = Some(key.name);
        self.tenant = Some(key.tenant);
        self.team = key.team;
        self.key_budget = key.budget;
        self.key_rate_limit = key.rate_limit;
    }

    /// When a stream ended without the provider's usage (it was cut off, broke, or the
    /// provider sends none), estimates it: a quarter of the request body's bytes as prompt
    /// tokens, a quarter of the generated bytes as output. Marked as an estimate.
    pub fn estimate_missing_usage(&mut self) {
        if self.usage.is_some() || self.served_by.is_none() {
            return;
        }
        let quarter = |bytes: u64| bytes.div_ceil(4);
        self.set_usage(Some(Usage {
            input_tokens: quarter(u64::try_from(self.request_bytes).unwrap_or(u64::MAX)),
            output_tokens: quarter(self.generated_bytes),
            ..Usage::default()
        }));
        self.usage_estimated = true;
    }

    /// Records the usage of the answer being served, and prices it.
    pub fn set_usage(&mut self, usage: Option<Usage>) {
        self.usage = usage;
        self.cost = match (&self.served_by, &self.usage) {
            (Some((provider, model)), Some(u)) => self.state.cost(provider, model, u),
            _ => None,
        };
        // Earlier answers the request also pays for (one sent back for repair): what is known
        // of each is added, so neither is dropped when the other lacks usage or a price.
        if let Some(prior) = self.prior {
            self.usage = Some(prior.usage + self.usage.unwrap_or_default());
            self.cost = match (prior.cost, self.cost) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// A request whose last answer never came (its targets all failed after a cascade's
    /// earlier tier answered, or a repair was asked for) still paid for the earlier answers.
    pub fn keep_prior_spend(&mut self) {
        if self.usage.is_none()
            && self.cost.is_none()
            && let Some(prior) = self.prior
        {
            self.usage = Some(prior.usage);
            self.cost = prior.cost;
        }
    }

    /// A fresh context on `state`.
    pub fn new(state: Arc<LiveState>) -> Self {
        RequestCtx {
            request_id: uuid::Uuid::now_v7().simple().to_string(),
            started: Instant::now(),
            state,
            operation: Operation::Other,
            client_api: ClientApi::OpenAi,
            messages_body: None,
            model: None,
            key_name: None,
            tenant: None,
            team: None,
            key_budget: None,
            key_rate_limit: None,
            user: None,
            session: None,
            tags: Vec::new(),
            served_by: None,
            attempts: 0,
            attempt_log: Vec::new(),
            status: 0,
            usage: None,
            cost: None,
            request_bytes: 0,
            reservation: None,
            token_charges: Vec::new(),
            rate_headers: Vec::new(),
            generated_bytes: 0,
            usage_estimated: false,
            stream_guard: None,
            stream_check: None,
            plugin_view: None,
            plugin_stream: None,
            output_check: None,
            repair: None,
            prior: None,
            capturing: false,
            captured: None,
            cascade: None,
            charges: Vec::new(),
            spend: None,
            ttft: None,
            error: None,
        }
    }
}
