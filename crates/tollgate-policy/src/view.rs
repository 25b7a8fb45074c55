//! What scripts see: read-only views of the request, the response and the routing context.
//!
//! Views are `Arc`s, so handing one to a script costs a reference count, and fields are turned
//! into Rhai values only when a script reads them.

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate_types::ChatRequest;

/// Who is calling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The virtual key's name.
    pub key: String,
    /// The key's tenant.
    pub tenant: String,
    /// End user (`user` field or `x-tollgate-user`).
    pub user: String,
    /// Session (`x-tollgate-session`).
    pub session: String,
}

#[derive(Debug)]
struct RequestData {
    model: ImmutableString,
    /// (role, text): Rhai strings, so a script reading one costs a reference count, not a copy.
    messages: Vec<(ImmutableString, ImmutableString)>,
    stream: bool,
    has_tools: bool,
    has_response_format: bool,
    max_tokens: Option<u32>,
    identity: Identity,
    tags: Vec<String>,
    metadata: serde_json::Map<String, Value>,
    headers: Vec<(String, String)>,
    tokens: OnceLock<i64>,
}

/// The request as scripts see it.
#[derive(Debug, Clone)]
pub struct RequestView(Arc<RequestData>);

impl RequestView {
    /// A view of `req`. `headers` must already be filtered to the configured allow-list.
    pub fn new(
        req: &ChatRequest,
        identity: Identity,
        tags: Vec<String>,
        metadata: serde_json::Map<String, Value>,
        headers: Vec<(String, String)>,
    ) -> Self {
        RequestView(Arc::new(RequestData {
            model: req.model.as_str().into(),
            messages: req
                .messages
                .iter()
                .map(|m| (m.role.as_str().into(), m.text().into()))
                .collect(),
            stream: req.is_stream(),
            has_tools: req.has_tools(),
            has_response_format: req.extra.contains_key("response_format"),
            max_tokens: req.output_cap(),
            identity,
            tags,
            metadata,
            headers,
            tokens: OnceLock::new(),
        }))
    }

    /// Approximate prompt tokens: about four bytes a token plus three per message, the ratio
    /// BPE tokenizers average on English. Costs nothing, unlike [`Self::exact_tokens`].
    pub fn approx_tokens(&self) -> i64 {
        let bytes: usize = self
            .0
            .messages
            .iter()
            .map(|(_, t)| t.len().div_ceil(4) + 3)
            .sum();
        i64::try_from(bytes + 3).unwrap_or(i64::MAX)
    }

    /// Exact prompt tokens under OpenAI's o200k BPE (tiktoken), computed on first use.
    /// Costs about 30 µs per 2 KB of text. Above 256 KiB of text the estimate is returned
    /// instead: BPE merging grows worse than linearly on long runs without whitespace, and a
    /// script must not stall a worker on one request.
    pub fn exact_tokens(&self) -> i64 {
        const EXACT_LIMIT_BYTES: usize = 256 * 1024;
        if self.0.messages.iter().map(|(_, t)| t.len()).sum::<usize>() > EXACT_LIMIT_BYTES {
            return self.approx_tokens();
        }
        *self.0.tokens.get_or_init(|| {
            let bpe = tiktoken_rs::o200k_base_singleton();
            let per_message: usize = self
                .0
                .messages
                .iter()
                // Chat templates add about 3 tokens per message.
                .map(|(_, text)| bpe.encode_ordinary(text).len() + 3)
                .sum();
            i64::try_from(per_message + 3).unwrap_or(i64::MAX)
        })
    }

    fn last_user_text(&self) -> ImmutableString {
        self.0
            .messages
            .iter()
            .rev()
            .find(|(role, _)| role == "user")
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }

    fn system_text(&self) -> String {
        self.0
            .messages
            .iter()
            .filter(|(role, _)| role == "system" || role == "developer")
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The response as `on_response` sees it.
#[derive(Debug, Clone, Default)]
pub struct ResponseView {
    /// The answer's text.
    pub text: Arc<str>,
    /// `stop`, `length`, `tool_calls`, ...
    pub finish_reason: Arc<str>,
    /// Output tokens.
    pub output_tokens: i64,
    /// Whether the answer is a tool call.
    pub has_tool_calls: bool,
    /// The mean token log-probability, when the provider reported them.
    pub mean_logprob: Option<f64>,
    /// The cascade tier that answered (1-based).
    pub tier: i64,
    /// The other scorers' combined score for this answer, when the tier has others.
    pub score: Option<f64>,
}

/// Health of one target, as far as it is known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TargetHealth {
    /// EWMA of whole-request latency, ms.
    pub ewma_latency_ms: f64,
    /// EWMA of time to first token, ms.
    pub ewma_ttft_ms: f64,
    /// EWMA of the failure rate, 0..1.
    pub error_rate: f64,
    /// Requests in flight.
    pub in_flight: i64,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
}

/// Price of a target in USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// Input tokens.
    pub input_per_1m: f64,
    /// Output tokens.
    pub output_per_1m: f64,
}

/// Everything a script may consult besides the request.
#[derive(Debug, Clone, Default)]
pub struct ContextData {
    /// The model alias's own targets, as `provider/model`.
    pub targets: Vec<String>,
    /// Health per target id.
    pub health: HashMap<String, TargetHealth>,
    /// Price per target id (shared: the live state builds it once).
    pub prices: Arc<HashMap<String, Price>>,
    /// Remaining budget in USD, once budgets exist.
    pub budget_remaining: Option<f64>,
    /// Seconds since the Unix epoch (UTC); injectable for tests.
    pub unix_time: i64,
}

impl ContextData {
    /// A context at the current time.
    pub fn now() -> Self {
        let unix_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        ContextData {
            unix_time,
            ..ContextData::default()
        }
    }
}

/// The routing context as scripts see it.
#[derive(Debug, Clone)]
pub struct ContextView(pub Arc<ContextData>);

impl ContextView {
    fn hour(&self) -> i64 {
        self.0.unix_time.rem_euclid(86_400) / 3_600
    }

    fn weekday(&self) -> ImmutableString {
        // 1970-01-01 was a Thursday.
        const DAYS: [&str; 7] = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"];
        DAYS[(self.0.unix_time.div_euclid(86_400).rem_euclid(7)) as usize].into()
    }

    fn estimate_cost(&self, target: &str, input: i64, output: i64) -> f64 {
        self.0.prices.get(target).map_or(0.0, |p| {
            (input.max(0) as f64 * p.input_per_1m + output.max(0) as f64 * p.output_per_1m) / 1e6
        })
    }

    /// `targets` ordered cheapest first: by output price, then input price. The sort is
    /// stable, and a target without a price counts as free, as in `output_price`.
    fn by_price<'t>(&self, targets: impl Iterator<Item = &'t str>) -> Array {
        let mut priced: Vec<((f64, f64), &str)> = targets
            .map(|id| {
                let p = self.0.prices.get(id).copied().unwrap_or_default();
                ((p.output_per_1m, p.input_per_1m), id)
            })
            .collect();
        priced.sort_by(|(a, _), (b, _)| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        priced.into_iter().map(|(_, id)| id.into()).collect()
    }
}

fn strings(v: &[String]) -> Array {
    v.iter().map(|s| Dynamic::from(s.clone())).collect()
}

/// Registers the view types and their getters on `engine`.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<RequestView>("Request")
        .register_get("model", |r: &mut RequestView| r.0.model.clone())
        .register_get("messages", |r: &mut RequestView| -> Array {
            r.0.messages
                .iter()
                .map(|(role, text)| {
                    let mut m = Map::new();
                    m.insert("role".into(), role.clone().into());
                    m.insert("text".into(), text.clone().into());
                    Dynamic::from_map(m)
                })
                .collect()
        })
        .register_get("last_user_text", |r: &mut RequestView| r.last_user_text())
        .register_get("system_text", |r: &mut RequestView| r.system_text())
        .register_get("tokens", |r: &mut RequestView| r.approx_tokens())
        .register_get("exact_tokens", |r: &mut RequestView| r.exact_tokens())
        .register_get("turns", |r: &mut RequestView| r.0.messages.len() as i64)
        .register_get("stream", |r: &mut RequestView| r.0.stream)
        .register_get("has_tools", |r: &mut RequestView| r.0.has_tools)
        .register_get("has_response_format", |r: &mut RequestView| {
            r.0.has_response_format
        })
        .register_get("max_tokens", |r: &mut RequestView| -> Dynamic {
            r.0.max_tokens
                .map_or(Dynamic::UNIT, |n| Dynamic::from(i64::from(n)))
        })
        .register_get("key", |r: &mut RequestView| r.0.identity.key.clone())
        .register_get("tenant", |r: &mut RequestView| r.0.identity.tenant.clone())
        .register_get("user", |r: &mut RequestView| r.0.identity.user.clone())
        .register_get("session", |r: &mut RequestView| {
            r.0.identity.session.clone()
        })
        .register_get("tags", |r: &mut RequestView| strings(&r.0.tags))
        .register_get("metadata", |r: &mut RequestView| -> Dynamic {
            rhai::serde::to_dynamic(&r.0.metadata).unwrap_or(Dynamic::UNIT)
        })
        .register_fn("has_tag", |r: &mut RequestView, tag: &str| {
            r.0.tags.iter().any(|t| t == tag)
        })
        .register_fn("meta", |r: &mut RequestView, key: &str| -> Dynamic {
            r.0.metadata
                .get(key)
                .and_then(|v| rhai::serde::to_dynamic(v).ok())
                .unwrap_or(Dynamic::UNIT)
        })
        .register_fn("header", |r: &mut RequestView, name: &str| -> Dynamic {
            let name = name.to_ascii_lowercase();
            r.0.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map_or(Dynamic::UNIT, |(_, v)| v.clone().into())
        });
    engine
        .register_type_with_name::<ResponseView>("Response")
        .register_get("text", |r: &mut ResponseView| r.text.to_string())
        .register_get("finish_reason", |r: &mut ResponseView| {
            r.finish_reason.to_string()
        })
        .register_get("output_tokens", |r: &mut ResponseView| r.output_tokens)
        .register_get("has_tool_calls", |r: &mut ResponseView| r.has_tool_calls)
        .register_get("mean_logprob", |r: &mut ResponseView| -> Dynamic {
            r.mean_logprob.map_or(Dynamic::UNIT, Dynamic::from)
        })
        .register_get("tier", |r: &mut ResponseView| r.tier)
        .register_get("score", |r: &mut ResponseView| -> Dynamic {
            r.score.map_or(Dynamic::UNIT, Dynamic::from)
        });
    engine
        .register_type_with_name::<ContextView>("Context")
        .register_get("hour", |c: &mut ContextView| c.hour())
        .register_get("weekday", |c: &mut ContextView| c.weekday())
        .register_get("unix_time", |c: &mut ContextView| c.0.unix_time)
        .register_get("targets", |c: &mut ContextView| strings(&c.0.targets))
        .register_get("budget_remaining", |c: &mut ContextView| -> Dynamic {
            c.0.budget_remaining.map_or(Dynamic::UNIT, Dynamic::from)
        })
        .register_fn("health", |c: &mut ContextView, target: &str| -> Map {
            let h = c.0.health.get(target).copied().unwrap_or(TargetHealth {
                circuit: "closed",
                ..TargetHealth::default()
            });
            let mut m = Map::new();
            m.insert("ewma_latency_ms".into(), h.ewma_latency_ms.into());
            m.insert("ewma_ttft_ms".into(), h.ewma_ttft_ms.into());
            m.insert("error_rate".into(), h.error_rate.into());
            m.insert("in_flight".into(), h.in_flight.into());
            m.insert("circuit".into(), h.circuit.into());
            m
        })
        .register_fn("price", |c: &mut ContextView, target: &str| -> Map {
            let p = c.0.prices.get(target).copied().unwrap_or_default();
            let mut m = Map::new();
            m.insert("input_per_1m".into(), p.input_per_1m.into());
            m.insert("output_per_1m".into(), p.output_per_1m.into());
            m
        })
        .register_fn("input_price", |c: &mut ContextView, target: &str| {
            c.0.prices.get(target).map_or(0.0, |p| p.input_per_1m)
        })
        .register_fn("output_price", |c: &mut ContextView, target: &str| {
            c.0.prices.get(target).map_or(0.0, |p| p.output_per_1m)
        })
        .register_fn(
            "by_price",
            |c: &mut ContextView, targets: Array| -> Result<Array, Box<EvalAltResult>> {
                let ids = targets
                    .into_iter()
                    .map(|t| {
                        t.into_immutable_string().map_err(|kind| {
                            format!("by_price: targets must be strings, not {kind}")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(c.by_price(ids.iter().map(ImmutableString::as_str)))
            },
        )
        .register_fn("by_price", |c: &mut ContextView| {
            c.by_price(c.0.targets.iter().map(String::as_str))
        })
        .register_fn(
            "estimate_cost",
            |c: &mut ContextView, target: &str, input: i64, output: i64| {
                c.estimate_cost(target, input, output)
            },
        );
}
