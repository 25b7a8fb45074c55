//! The config file's schema, exactly as written. Field doc comments are the user docs.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners and process settings.
    #[serde(default)]
    pub server: RawServer,
    /// Request limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Upstream providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    /// Public model aliases by name.
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    /// Virtual keys clients authenticate with.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Routing-policy settings.
    #[serde(default)]
    pub policy: RawPolicy,
    /// Prices per target (`"provider/model"`), in USD per million tokens.
    #[serde(default)]
    pub prices: BTreeMap<String, RawPrice>,
    /// Retries, backoff, retry budget, circuit breakers and deadlines.
    #[serde(default)]
    pub resilience: RawResilience,
    /// State shared between several gateways.
    #[serde(default)]
    pub shared: RawShared,
    /// Where spend is kept, and how budgets reserve.
    #[serde(default)]
    pub spend: RawSpend,
    /// Caps on spend.
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    /// Requests and tokens per minute.
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    /// Webhook alerts on budgets and spend.
    #[serde(default)]
    pub alerts: RawAlerts,
    /// Built-in guardrails, run in order on requests (before routing) and answers.
    #[serde(default)]
    pub guardrails: Vec<RawGuardrail>,
    /// Wasm plugins, run in order.
    #[serde(default)]
    pub plugins: Vec<crate::plugins::RawPlugin>,
}

/// `[[guardrails]]`: a built-in guardrail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrail {
    /// Unique name, in errors, logs and metrics.
    pub name: String,
    /// `pii`, `keywords` (words that may not appear), `topics` (a request must touch on one),
    /// `injection` (a scored heuristic), `max_prompt_tokens`, or `json_schema` (answers to
    /// requests with a `json_schema` response format must match it).
    pub kind: String,
    /// `redact` (pii and keywords; the default for pii) or `deny` (the default otherwise).
    pub action: Option<String>,
    /// `request`, `response` or both. Default: both for pii and keywords, `request` otherwise
    /// (the only choice for topics, injection and max_prompt_tokens).
    pub apply_to: Option<Vec<String>>,
    /// The model aliases it applies to. Default: all.
    pub models: Option<Vec<String>>,
    /// pii: `email`, `phone`, `credit_card`, `iban`, `ssn`, `api_key`. Default: all.
    pub detect: Option<Vec<String>>,
    /// keywords and topics: the words and phrases (whole words, any case).
    pub words: Option<Vec<String>>,
    /// injection: the score (0 to 1) from which a request is refused. Default 0.5.
    pub threshold: Option<f32>,
    /// max_prompt_tokens: the cap (tokens estimated as a quarter of the text's bytes).
    pub max_tokens: Option<u64>,
    /// json_schema: when an answer fails the schema, ask the model once to fix it.
    pub repair: Option<bool>,
}

/// `[alerts]`: webhook POSTs when a budget passes a share of its cap, and when spend per hour
/// jumps. Each alert is sent once per budget period (or hour), even by several gateways.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Where alerts are POSTed as JSON, with a Slack-compatible `text` field. Default: no
    /// alerts. Write `"${TOLLGATE_ALERT_WEBHOOK}"` to keep the URL out of the file.
    pub webhook_url: Option<String>,
    /// Shares of a budget's cap that raise an alert. Default `[0.5, 0.8, 1.0]`.
    pub thresholds: Option<Vec<f64>>,
    /// An hour's spend per key or model this many times its trailing 24-hour mean raises an
    /// alert. Default 3; 0 turns anomaly alerts off.
    pub anomaly_factor: Option<f64>,
    /// ... if that hour's spend is at least this, in USD. Default 1.
    pub anomaly_min_usd: Option<f64>,
    /// Seconds between two looks at budgets and spend. Default 30.
    pub check_interval_secs: Option<u64>,
}

/// `[[rate_limits]]`: requests and/or tokens per minute for the requests that match every
/// selector given, counted per `per` entity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Unique name. Default: built from the selectors, e.g. `per:key`.
    pub name: Option<String>,
    /// Count separately for each `key`, `team`, `tenant`, `user` (`x-tollgate-user` or the body's
    /// `user`), `session` (`x-tollgate-session`) or `model`. Default: one count for everything
    /// the rule selects.
    pub per: Option<String>,
    /// Only requests made with this virtual key (its `name`).
    pub key: Option<String>,
    /// Only requests made with keys of this team.
    pub team: Option<String>,
    /// Only requests of this tenant.
    pub tenant: Option<String>,
    /// Only requests for this model alias.
    pub model: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt and output) per minute.
    pub tpm: Option<u64>,
}

/// `[spend]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpend {
    /// Directory of the embedded store (`spend.db`, SQLite). Default `./.tollgate`; write
    /// `"${TOLLGATE_DATA_DIR:-./.tollgate}"` to take it from the environment.
    pub data_dir: Option<String>,
    /// Output tokens a request without `max_tokens` reserves against its budgets. Default 4096.
    pub reserve_output_tokens: Option<u32>,
    /// Status of a request refused for budget: 402 (default) or 429.
    pub exceeded_status: Option<u16>,
    /// A target with no `[prices]` entry and no catalog price: `free` (default: served and
    /// logged without a cost) or `error` (the config is refused).
    pub unpriced: Option<String>,
    /// With `[shared] redis_url`, budgets are counted in Redis. When it cannot be reached:
    /// `deny` (default) answers 503, so no budget is ever overspent; `local` counts on in this
    /// gateway alone until Redis is back (those requests are not reconciled into Redis).
    pub on_shared_error: Option<String>,
}

/// `[[budgets]]`: a cap on the spend of the requests that match every selector given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Unique name. Default: built from the selectors and period, e.g. `key:team-a/daily`.
    pub name: Option<String>,
    /// Only requests made with this virtual key (its `name`).
    pub key: Option<String>,
    /// Only requests made with keys of this team.
    pub team: Option<String>,
    /// Only requests of this tenant.
    pub tenant: Option<String>,
    /// Only requests for this model alias.
    pub model: Option<String>,
    /// A cap for each `key`, `team`, `tenant`, `user` (`x-tollgate-user` or the body's `user`),
    /// `session` (`x-tollgate-session`) or `model` separately. Default: one cap for all.
    pub per: Option<String>,
    /// The cap in USD. Set this, `limit_tokens`, or both (the budget's name counts dollars,
    /// `NAME:tokens` tokens).
    pub limit_usd: Option<f64>,
    /// The cap in tokens (prompt and output).
    pub limit_tokens: Option<u64>,
    /// `total` (default), `hourly`, `daily`, `weekly` or `monthly`, on UTC calendar boundaries.
    pub period: Option<String>,
}

/// `[shared]`: what several gateway replicas share. Its `Debug` output leaves out the URL,
/// which may hold a password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    /// `redis://[user:password@]host:port[/db]`. When set, circuit-breaker transitions are
    /// shared with every gateway using the same Redis and prefix. Read at start only.
    pub redis_url: Option<String>,
    /// `postgres://user[:password]@host[:port]/db`. When set, the spend ledger and budget
    /// spend go to this database (shared by every gateway) instead of each gateway's SQLite.
    pub database_url: Option<String>,
    /// Prefix of the Redis keys and channel. Default `tollgate`.
    pub prefix: Option<String>,
}

impl std::fmt::Debug for RawShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawShared")
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[redacted]"),
            )
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `[resilience]`: defaults for every model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    /// Retries of the same target on a retryable error (429, 5xx, 529). Default 1.
    pub retries: Option<u32>,
    /// Backoff ceiling before the first retry, in milliseconds (full jitter). Default 100.
    pub backoff_base_ms: Option<u64>,
    /// Largest backoff ceiling, in milliseconds. Default 2000.
    pub backoff_max_ms: Option<u64>,
    /// Longest upstream `retry-after` waited out, in milliseconds; longer ones move on to the
    /// next target at once. Default 5000.
    pub max_retry_wait_ms: Option<u64>,
    /// Retries per target, as a fraction of its recent requests. Default 0.2.
    pub retry_budget_ratio: Option<f64>,
    /// Retries per target always allowed per 10 s window. Default 3.
    pub retry_budget_min: Option<u32>,
    /// Total deadline of one request across every attempt, in milliseconds. Default 600000.
    pub request_timeout_ms: Option<u64>,
    /// Circuit breaker per target.
    pub breaker: Option<RawBreaker>,
}

/// `[resilience.breaker]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Default true.
    pub enabled: Option<bool>,
    /// Open after this many failures in a row. Default 5.
    pub consecutive_failures: Option<u32>,
    /// Or when this fraction of a window's attempts failed. Default 0.5.
    pub error_rate: Option<f64>,
    /// Minimum attempts in the window for the error rate to count. Default 20.
    pub min_requests: Option<u32>,
    /// Error-rate window, in milliseconds. Default 30000.
    pub window_ms: Option<u64>,
    /// First open's length, in milliseconds; doubles on each re-open. Default 5000.
    pub cooldown_ms: Option<u64>,
    /// Longest open, in milliseconds. Default 60000.
    pub max_cooldown_ms: Option<u64>,
}

/// `[policy]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Script used by models that name no `policy` of their own. Paths are relative to the
    /// config file.
    pub default: Option<String>,
    /// What a script failure does: `fallback` (the model's static targets, the default) or
    /// `deny` (HTTP 500).
    pub on_error: Option<String>,
    /// Rhai operations allowed per call. Default 200000.
    pub max_operations: Option<u64>,
    /// Wall-clock time allowed per call, in milliseconds. Default 10.
    pub timeout_ms: Option<u64>,
    /// Request headers scripts may read with `req.header(name)`. Default: none.
    #[serde(default)]
    pub header_allowlist: Vec<String>,
}

/// `[prices."provider/model"]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// USD per million input tokens.
    pub input_per_1m: f64,
    /// USD per million output tokens.
    pub output_per_1m: f64,
    /// USD per million prompt tokens read from the provider's cache (default: the input price).
    pub cached_input_per_1m: Option<f64>,
    /// USD per million prompt tokens written to the provider's cache (default: the input price).
    pub cache_write_per_1m: Option<f64>,
    /// Higher prices for every token of a request whose prompt is longer than
    /// `above_input_tokens` (Gemini's and Claude's long-context tiers).
    pub long_context: Option<RawLongContext>,
}

/// `[prices."provider/model".long_context]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLongContext {
    /// Prompts longer than this many tokens pay this tier.
    pub above_input_tokens: u64,
    /// USD per million input tokens.
    pub input_per_1m: f64,
    /// USD per million output tokens.
    pub output_per_1m: f64,
    /// USD per million cached prompt tokens (default: this tier's input price).
    pub cached_input_per_1m: Option<f64>,
    /// USD per million prompt tokens written to the cache (default: this tier's input price).
    pub cache_write_per_1m: Option<f64>,
}

/// A date-time written as TOML's own type or as a string (which `${VAR}` can fill).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawDateTime {
    /// `2026-12-31T23:59:59Z`
    Toml(toml::value::Datetime),
    /// `"2026-12-31T23:59:59Z"`
    Text(String),
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the client-facing listener. Default `127.0.0.1:4000`.
    pub listen: Option<String>,
    /// Address of the admin listener (`/metrics`, health, `/admin/*`). Default: none.
    pub admin_listen: Option<String>,
    /// The admin API's own key (never a virtual key): `sha256:<hex>` of it, as
    /// `tollgate hash-key` prints, or the key itself from the environment
    /// (`"${TOLLGATE_ADMIN_KEY}"`). With it, `/admin/*` asks for it, and keys can be made,
    /// listed, revoked and rotated through `/admin/keys`; clients then always need a key.
    pub admin_key: Option<String>,
    /// Worker threads of the proxy service. Default: the number of CPUs.
    pub threads: Option<usize>,
    /// PID file, used by graceful upgrades. Default `/tmp/tollgate.pid`.
    pub pid_file: Option<String>,
    /// Socket over which a new process takes the listeners (`serve --upgrade`).
    /// Default `/tmp/tollgate_upgrade.sock`.
    pub upgrade_sock: Option<String>,
    /// Seconds to keep serving after SIGTERM/SIGQUIT before closing listeners. Default 5.
    pub grace_period_secs: Option<u64>,
    /// Seconds to let in-flight requests finish after the grace period. Default 30.
    pub graceful_shutdown_timeout_secs: Option<u64>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest accepted request body in bytes; larger bodies get 413. Default 32 MiB.
    pub max_request_bytes: Option<u64>,
}

/// `[providers.NAME]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// `openai`, `azure`, `mistral`, `deepseek`, `groq`, `together`, `fireworks`, `openrouter`,
    /// `ollama`, `vllm`, `llamacpp`, `openai_compatible` or `mock` (the built-in mock provider).
    pub kind: String,
    /// Base URL in the OpenAI SDK convention (`https://api.openai.com/v1`). Presets have a default.
    pub base_url: Option<String>,
    /// Environment variable holding the API key. Presets have a default (`OPENAI_API_KEY`, ...).
    pub api_key_env: Option<String>,
    /// Azure OpenAI `api-version` query parameter. Default `2024-10-21`.
    pub api_version: Option<String>,
    /// Extra headers sent on every upstream request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TCP + TLS connect timeout in milliseconds. Default 5000.
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed from sending the request to receiving response headers. Default 300000.
    pub first_byte_timeout_ms: Option<u64>,
    /// Longest pause allowed between two response body chunks. Default 120000.
    pub idle_timeout_ms: Option<u64>,
    /// For streams: time allowed from sending the request to the first body chunk; past it
    /// the next target is tried. Default: `first_byte_timeout_ms`.
    pub ttft_timeout_ms: Option<u64>,
    /// For OpenAI-format streams: ask for the final usage chunk (`stream_options.include_usage`)
    /// even when the client did not, so streamed requests are priced. Default: on, except for
    /// Mistral, which rejects the field and sends usage anyway.
    pub stream_usage: Option<bool>,
    /// Built-in mock settings (`kind = "mock"` only).
    pub mock: Option<RawMock>,
}

/// `[providers.NAME.mock]`: behaviour of the built-in mock provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMock {
    /// Listen address of the in-process mock. Default `127.0.0.1:0` (any free port).
    pub listen: Option<String>,
    /// Delay before the first streamed chunk, in milliseconds. Default 0.
    pub ttft_ms: Option<u64>,
    /// Delay between streamed chunks, in milliseconds. Default 0.
    pub chunk_delay_ms: Option<u64>,
    /// Number of content chunks per streamed answer. Default 8.
    pub chunks: Option<u32>,
    /// The wire format the gateway speaks to this mock: `openai` (default), `anthropic` or
    /// `gemini`. The mock answers all three; this picks the adapter.
    pub wire: Option<String>,
}

/// `[models.ALIAS]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Upstream targets, tried in order (or weighted, if any target has a weight). A model
    /// with a `cascade` may leave them out: its tiers name its targets.
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    /// Cheap tier first, escalating only when its answer looks unsure.
    pub cascade: Option<crate::cascade::RawCascade>,
    /// Free text shown nowhere but the config.
    pub description: Option<String>,
    /// A Rhai script deciding this model's routing (relative to the config file).
    pub policy: Option<String>,
    /// `priority` (default), `weighted` (default when a target has a weight) or
    /// `least_latency`.
    pub strategy: Option<String>,
    /// Retries of the same target; overrides `[resilience] retries`.
    pub retries: Option<u32>,
    /// Total deadline of one request, in milliseconds; overrides
    /// `[resilience] request_timeout_ms`.
    pub timeout_ms: Option<u64>,
}

/// One entry of `models.ALIAS.targets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// A name from `[providers]`.
    pub provider: String,
    /// The provider's model name (the deployment name for Azure).
    pub model: String,
    /// Relative weight for picking the first target. Default: ordered, no weights.
    pub weight: Option<u32>,
}

/// One `[[keys]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// A label for logs and the admin API.
    pub name: String,
    /// `sha256:<64 hex digits>` of the key (`tollgate hash-key KEY` prints it).
    pub hash: String,
    /// The tenant the key belongs to.
    pub tenant: String,
    /// The team within the tenant, for budgets, limits and reports.
    pub team: Option<String>,
    /// When the key stops working: an offset date-time, bare or quoted
    /// (`2026-12-31T23:59:59Z`, or `"${KEY_EXPIRES}"`).
    pub expires: Option<RawDateTime>,
    /// `true` refuses the key at once (kept in the file, so logs and the ledger still name it).
    #[serde(default)]
    pub revoked: bool,
}
