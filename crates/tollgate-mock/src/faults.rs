//! Fault injection, per request, from `x-mock-*` headers.
//!
//! The gateway forwards a provider's configured `headers`, so a provider entry such as
//! `headers = { "x-mock-status" = "503" }` turns a mock target into a failing one.
//!
//! Every route honours every header; an injected status comes with an error body in the
//! route's wire format (OpenAI, Anthropic or Gemini).

use http::HeaderMap;
use std::time::Duration;

/// Faults and timing overrides for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// `x-mock-status: 503`: answer with this status and an error body in the route's format:
    /// OpenAI `{"error":{"message","type","param","code"}}`, Anthropic
    /// `{"type":"error","error":{"type","message"}}` (`overloaded_error` for 529...), Gemini
    /// `{"error":{"code","message","status"}}` (`UNAVAILABLE` for 503...).
    pub status: Option<u16>,
    /// `x-mock-fault-rate: 0.3`: apply `status` to this fraction of requests (default 1.0).
    pub rate: Option<f64>,
    /// `x-mock-latency-ms: 200`: wait before answering.
    pub latency: Option<Duration>,
    /// `x-mock-hang: 1`: never answer.
    pub hang: bool,
    /// `x-mock-reset-after: 3`: drop the connection after this many streamed events (SSE
    /// events, or elements of Gemini's streamed JSON array), counting role and start events.
    pub reset_after: Option<u32>,
    /// `x-mock-malformed: 1`: answer 200 with a body that is not valid JSON.
    pub malformed: bool,
    /// `x-mock-off-schema: 1`: ignore the request's `json_schema` response format and answer
    /// in prose, as a model sometimes does.
    pub off_schema: bool,
    /// `x-mock-ttft-ms`: overrides the time to first streamed chunk.
    pub ttft: Option<Duration>,
    /// `x-mock-chunk-delay-ms`: overrides the delay between streamed chunks.
    pub chunk_delay: Option<Duration>,
    /// `x-mock-chunks`: overrides the number of streamed content chunks.
    pub chunks: Option<u32>,
    /// `x-mock-retry-after: 2`: sent with an injected status.
    pub retry_after: Option<String>,
    /// `x-mock-cached-tokens: 1024`: report this many prompt tokens (at most all of them) as
    /// served from the provider's prompt cache, in each format's convention:
    /// - OpenAI: `usage.prompt_tokens_details.cached_tokens = N`; `prompt_tokens` includes them.
    /// - Anthropic: `usage.cache_read_input_tokens = N`; `input_tokens` excludes them
    ///   (prompt − N).
    /// - Gemini: `usageMetadata.cachedContentTokenCount = N`; `promptTokenCount` includes them.
    pub cached_tokens: Option<u64>,
    /// `x-mock-max-context: 8192`: refuse prompts over this many tokens (estimated from the
    /// body at 4 bytes a token) with a 400 saying the context length is exceeded, in the
    /// route's format, as a model with a small context window would.
    pub max_context: Option<u64>,
    /// `x-mock-confidence: 0.2`: the simulated model is this sure of its answer: its
    /// log-probabilities and self-rating say so (see the `sim` module).
    pub confidence: Option<f64>,
    /// `x-mock-accuracy: 0.7`: answer arithmetic quizzes (`What is A + B?`) right this share
    /// of the time, calibrated (see the `sim` module).
    pub accuracy: Option<f64>,
}

impl Faults {
    /// Reads the `x-mock-*` headers; unparsable values are ignored.
    pub fn from_headers(h: &HeaderMap) -> Faults {
        Self::from_lookup(|name| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
        })
    }

    /// Reads one step of a fault script: the header names without `x-mock-` as JSON keys
    /// (`{"status": 503, "retry-after": 2, "ttft-ms": 3000}`).
    pub fn from_json(v: &serde_json::Value) -> Faults {
        Self::from_lookup(|name| {
            let key = name.strip_prefix("x-mock-").unwrap_or(name);
            match v.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
                other => Some(other.to_string()),
            }
        })
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Faults {
        let get = |name: &str| lookup(name);
        let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        let flag =
            |name: &str| get(name).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        Faults {
            status: num("x-mock-status").and_then(|s| u16::try_from(s).ok()),
            rate: get("x-mock-fault-rate").and_then(|v| v.parse().ok()),
            latency: num("x-mock-latency-ms").map(Duration::from_millis),
            hang: flag("x-mock-hang"),
            reset_after: num("x-mock-reset-after").and_then(|n| u32::try_from(n).ok()),
            malformed: flag("x-mock-malformed"),
            off_schema: flag("x-mock-off-schema"),
            ttft: num("x-mock-ttft-ms").map(Duration::from_millis),
            chunk_delay: num("x-mock-chunk-delay-ms").map(Duration::from_millis),
            chunks: num("x-mock-chunks").and_then(|n| u32::try_from(n).ok()),
            retry_after: get("x-mock-retry-after"),
            cached_tokens: num("x-mock-cached-tokens"),
            max_context: num("x-mock-max-context"),
            confidence: get("x-mock-confidence")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|c| (0.0..=1.0).contains(c)),
            accuracy: get("x-mock-accuracy")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|a| (0.0..=1.0).contains(a)),
        }
    }

    /// The status to inject for this request, after rolling the fault rate.
    pub fn injected_status(&self) -> Option<u16> {
        let status = self.status?;
        let rate = self.rate.unwrap_or(1.0);
        (rate >= 1.0 || rand::random::<f64>() < rate).then_some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-mock-status", "503".parse().expect("hv"));
        h.insert("x-mock-hang", "true".parse().expect("hv"));
        h.insert("x-mock-chunks", "nope".parse().expect("hv"));
        h.insert("x-mock-cached-tokens", "12".parse().expect("hv"));
        let f = Faults::from_headers(&h);
        assert_eq!(f.status, Some(503));
        assert!(f.hang);
        assert_eq!(f.chunks, None);
        assert_eq!(f.cached_tokens, Some(12));
        assert_eq!(f.injected_status(), Some(503));
    }

    #[test]
    fn zero_rate_never_injects() {
        let f = Faults {
            status: Some(500),
            rate: Some(0.0),
            ..Faults::default()
        };
        assert!((0..100).all(|_| f.injected_status().is_none()));
    }
}
