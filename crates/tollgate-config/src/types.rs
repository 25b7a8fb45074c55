//! Validated configuration: what the proxy builds its live state from.

use crate::presets::{AuthStyle, ProviderKind, WireFormat};
use crate::resilience::{Resilience, Strategy};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub source: String,
    /// Listeners and process settings.
    pub server: ServerConfig,
    /// Request limits.
    pub limits: Limits,
    /// Providers by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Model aliases by name.
    pub models: BTreeMap<String, ModelConfig>,
    /// Virtual keys.
    pub keys: Vec<VirtualKey>,
    /// Routing-policy settings.
    pub policy: PolicyConfig,
    /// Prices per target id (`provider/model`).
    pub prices: BTreeMap<String, PriceConfig>,
    /// Retries, backoff, breakers and deadlines.
    pub resilience: Resilience,
    /// State shared between gateways.
    pub shared: SharedSettings,
    /// Where spend is kept, and how budgets reserve.
    pub spend: crate::spend::SpendSettings,
    /// Caps on spend.
    pub budgets: Vec<crate::spend::BudgetConfig>,
    /// Requests and tokens per minute.
    pub rate_limits: Vec<crate::spend::RateLimitConfig>,
    /// Webhook alerts.
    pub alerts: crate::spend::AlertSettings,
    /// Built-in guardrails, in order.
    pub guardrails: Vec<crate::guardrails::GuardrailConfig>,
    /// Wasm plugins, in order.
    pub plugins: Vec<crate::plugins::PluginConfig>,
}

/// `[shared]`, validated.
#[derive(Debug, Clone)]
pub struct SharedSettings {
    /// Redis URL; may hold a password, so it is a secret.
    pub redis_url: Option<SecretString>,
    /// PostgreSQL URL for the ledger; a secret too.
    pub database_url: Option<SecretString>,
    /// Key and channel prefix.
    pub prefix: String,
}

/// What a routing-script failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPolicyError {
    /// Use the model's static targets.
    Fallback,
    /// Refuse the request.
    Deny,
}

/// `[policy]`, with defaults applied and paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// The default script.
    pub default: Option<PathBuf>,
    /// What a failure does.
    pub on_error: OnPolicyError,
    /// Operations per call.
    pub max_operations: u64,
    /// Time per call.
    pub timeout: Duration,
    /// Readable headers, lower-cased.
    pub header_allowlist: Vec<String>,
}

/// A target's price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriceConfig {
    /// Input tokens.
    pub input_per_1m: f64,
    /// Output tokens.
    pub output_per_1m: f64,
    /// Prompt tokens read from the provider's cache; `None` is the input price.
    pub cached_input_per_1m: Option<f64>,
    /// Prompt tokens written to the provider's cache; `None` is the input price.
    pub cache_write_per_1m: Option<f64>,
    /// The long-context tier, if the model has one.
    pub long_context: Option<LongContextConfig>,
}

/// A long-context tier in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongContextConfig {
    /// Prompts longer than this many tokens pay this tier on every token.
    pub above_input_tokens: u64,
    /// Input tokens.
    pub input_per_1m: f64,
    /// Output tokens.
    pub output_per_1m: f64,
    /// Cached prompt tokens; `None` is this tier's input price.
    pub cached_input_per_1m: Option<f64>,
    /// Prompt tokens written to the cache; `None` is this tier's input price.
    pub cache_write_per_1m: Option<f64>,
}

impl PriceConfig {
    /// The per-token price used for cost accounting.
    pub fn price(&self) -> tollgate_types::Price {
        let base = tollgate_types::Price::per_million(
            self.input_per_1m,
            self.output_per_1m,
            self.cached_input_per_1m,
            self.cache_write_per_1m,
        );
        match self.long_context {
            None => base,
            Some(t) => base.with_long_context(tollgate_types::LongContextPrice::per_million(
                t.above_input_tokens,
                t.input_per_1m,
                t.output_per_1m,
                t.cached_input_per_1m,
                t.cache_write_per_1m,
            )),
        }
    }
}

/// `[server]`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Client-facing listener.
    pub listen: String,
    /// Admin listener.
    pub admin_listen: Option<String>,
    /// The hash of the admin API's key.
    pub admin_key: Option<KeyHash>,
    /// Worker threads.
    pub threads: usize,
    /// PID file.
    pub pid_file: String,
    /// Upgrade socket.
    pub upgrade_sock: String,
    /// Grace period after a shutdown signal.
    pub grace_period_secs: u64,
    /// Time for in-flight requests to finish.
    pub graceful_shutdown_timeout_secs: u64,
}

/// `[limits]`, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body.
    pub max_request_bytes: usize,
}

/// A parsed upstream base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `https`?
    pub tls: bool,
    /// Host name or IP, without brackets.
    pub host: String,
    /// Port (defaulted from the scheme).
    pub port: u16,
    /// Path prefix without a trailing slash (`/v1`, or empty).
    pub path: String,
}

impl UpstreamUrl {
    /// The `Host` header value.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Upstream timeouts of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// From request sent to response headers.
    pub first_byte: Duration,
    /// Between two response body chunks.
    pub idle: Duration,
    /// For streams, from request sent to the first body chunk.
    pub ttft: Duration,
}

/// Built-in mock settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockSettings {
    /// Listen address of the in-process mock.
    pub listen: String,
    /// Delay before the first streamed chunk.
    pub ttft: Duration,
    /// Delay between streamed chunks.
    pub chunk_delay: Duration,
    /// Content chunks per streamed answer.
    pub chunks: u32,
}

/// A validated provider. Its `Debug` output names headers but never shows their values, which
/// may be credentials.
#[derive(Clone)]
pub struct ProviderConfig {
    /// Its name in `[providers]`.
    pub name: String,
    /// Its kind.
    pub kind: ProviderKind,
    /// Where to send requests.
    pub base_url: UpstreamUrl,
    /// The API key, if any. Never logged.
    pub api_key: Option<SecretString>,
    /// How the key is sent.
    pub auth: AuthStyle,
    /// The wire format it speaks.
    pub wire: WireFormat,
    /// Azure's `api-version` query parameter, or Anthropic's `anthropic-version` header.
    pub api_version: String,
    /// Extra headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Ask OpenAI-format streams for their usage chunk even when the client did not.
    pub stream_usage: bool,
    /// Mock settings (`kind = "mock"` only).
    pub mock: Option<MockSettings>,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("auth", &self.auth)
            .field("wire", &self.wire)
            .field("api_version", &self.api_version)
            .field("headers", &header_names)
            .field("timeouts", &self.timeouts)
            .field("mock", &self.mock)
            .finish()
    }
}

/// One target of a model alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Provider name.
    pub provider: String,
    /// Upstream model name.
    pub model: String,
    /// Weight, if weighted.
    pub weight: Option<u32>,
}

/// A validated model alias.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The alias.
    pub name: String,
    /// Targets in configured order.
    pub targets: Vec<Target>,
    /// The model's own routing script.
    pub policy: Option<PathBuf>,
    /// How targets are ordered per request.
    pub strategy: Strategy,
    /// Retries of the same target on a retryable error.
    pub retries: u32,
    /// Total deadline of one request.
    pub timeout: Duration,
    /// Its cascade, when it escalates from a cheap tier (`targets` then lists every tier's).
    pub cascade: Option<std::sync::Arc<crate::cascade::Cascade>>,
}

impl Config {
    /// Every routing script the config names (the default and each model's), once each.
    pub fn script_paths(&self) -> std::collections::BTreeSet<PathBuf> {
        self.policy
            .default
            .iter()
            .chain(self.models.values().filter_map(|m| m.policy.as_ref()))
            .chain(
                self.models
                    .values()
                    .filter_map(|m| m.cascade.as_deref())
                    .flat_map(crate::cascade::Cascade::scripts),
            )
            .cloned()
            .collect()
    }

    /// The files a reload reads besides the config: every script and plugin, once each.
    pub fn watched_paths(&self) -> std::collections::BTreeSet<PathBuf> {
        let mut paths = self.script_paths();
        paths.extend(self.plugins.iter().map(|p| p.path.clone()));
        paths
    }
}

impl ModelConfig {
    /// The script deciding this model's routing: its own, else the default.
    pub fn policy<'a>(&'a self, config: &'a Config) -> Option<&'a PathBuf> {
        self.policy.as_ref().or(config.policy.default.as_ref())
    }
}

impl Target {
    /// `provider/model`, the id scripts and prices use.
    pub fn id(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// SHA-256 of a virtual key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}…", &hex::encode(self.0)[..8])
    }
}

/// Hashes a presented key.
pub fn hash_key(key: &str) -> KeyHash {
    KeyHash(Sha256::digest(key.as_bytes()).into())
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// A virtual key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualKey {
    /// Label.
    pub name: String,
    /// Hash of the key.
    pub hash: KeyHash,
    /// Tenant.
    pub tenant: String,
    /// Team within the tenant.
    pub team: Option<String>,
    /// When it stops working, in Unix seconds.
    pub expires_at: Option<i64>,
    /// Refused, though still configured.
    pub revoked: bool,
    /// Its own budget (keys made through the admin API), besides any `[[budgets]]`.
    pub budget: Option<std::sync::Arc<crate::spend::BudgetConfig>>,
    /// Its own rate limit (keys made through the admin API), besides any `[[rate_limits]]`.
    pub rate_limit: Option<std::sync::Arc<crate::spend::RateLimitConfig>>,
}
