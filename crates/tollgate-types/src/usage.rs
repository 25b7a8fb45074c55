//! Token usage with one convention for cached tokens.

use serde::{Deserialize, Serialize};

/// Token usage of one upstream call.
///
/// **Convention:** `input_tokens` counts *every* prompt token, cached ones included (OpenAI's
/// `prompt_tokens` convention). `cached_input_tokens` and `cache_write_tokens` are subsets of
/// it. Adapters for providers that report cached tokens separately (Anthropic's `input_tokens`
/// excludes them) add them in when they build a `Usage`, so pricing never counts a token twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// All prompt tokens, cached included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache (subset of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (subset of `input_tokens`).
    pub cache_write_tokens: u64,
    /// Reasoning tokens (subset of `output_tokens`).
    pub reasoning_tokens: u64,
}

/// Token counts of two answers, summed (a request that pays for both).
impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(self, b: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + b.input_tokens,
            output_tokens: self.output_tokens + b.output_tokens,
            cached_input_tokens: self.cached_input_tokens + b.cached_input_tokens,
            cache_write_tokens: self.cache_write_tokens + b.cache_write_tokens,
            reasoning_tokens: self.reasoning_tokens + b.reasoning_tokens,
        }
    }
}

impl Usage {
    /// Reads an OpenAI-shaped `usage` object (`prompt_tokens`, `completion_tokens`, details).
    pub fn from_openai(v: &serde_json::Value) -> Option<Self> {
        let n = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let input = n(v, "prompt_tokens")?;
        let prompt_details = v.get("prompt_tokens_details");
        let completion_details = v.get("completion_tokens_details");
        Some(Usage {
            input_tokens: input,
            output_tokens: n(v, "completion_tokens").unwrap_or(0),
            cached_input_tokens: prompt_details
                .and_then(|d| n(d, "cached_tokens"))
                .unwrap_or(0),
            // Not an OpenAI field: Tollgate's own, from `to_openai`, so translations keep it.
            cache_write_tokens: prompt_details
                .and_then(|d| n(d, "cache_write_tokens"))
                .unwrap_or(0),
            reasoning_tokens: completion_details
                .and_then(|d| n(d, "reasoning_tokens"))
                .unwrap_or(0),
        })
    }

    /// Reads an Anthropic `usage` object. Anthropic's `input_tokens` excludes cache reads and
    /// cache writes, so both are added back to follow the convention above. Fields absent from
    /// a partial object (a stream's `message_delta`) read as 0.
    pub fn from_anthropic(v: &serde_json::Value) -> Self {
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let (read, write) = (
            n("cache_read_input_tokens"),
            n("cache_creation_input_tokens"),
        );
        Usage {
            input_tokens: n("input_tokens").saturating_add(read).saturating_add(write),
            output_tokens: n("output_tokens"),
            cached_input_tokens: read,
            cache_write_tokens: write,
            reasoning_tokens: 0,
        }
    }

    /// Reads Gemini's `usageMetadata`. `promptTokenCount` already includes
    /// `cachedContentTokenCount`; thinking tokens (`thoughtsTokenCount`) are billed as output
    /// but reported apart from `candidatesTokenCount`, so they are added to `output_tokens`.
    pub fn from_gemini(v: &serde_json::Value) -> Self {
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let thoughts = n("thoughtsTokenCount");
        Usage {
            input_tokens: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
            output_tokens: n("candidatesTokenCount").saturating_add(thoughts),
            cached_input_tokens: n("cachedContentTokenCount"),
            cache_write_tokens: 0,
            reasoning_tokens: thoughts,
        }
    }

    /// OpenAI's `usage` object for this usage. Cache writes have no OpenAI field; they are
    /// reported as `prompt_tokens_details.cache_write_tokens` so nothing is lost.
    pub fn to_openai(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total(),
            "prompt_tokens_details": {
                "cached_tokens": self.cached_input_tokens,
                "cache_write_tokens": self.cache_write_tokens,
            },
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        })
    }

    /// Anthropic's `usage` object for this usage: `input_tokens` without cache reads or writes.
    pub fn to_anthropic(&self) -> serde_json::Value {
        let uncached = self.input_tokens.saturating_sub(
            self.cached_input_tokens
                .saturating_add(self.cache_write_tokens),
        );
        serde_json::json!({
            "input_tokens": uncached,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
        })
    }

    /// Total tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_usage_with_details() {
        let v = serde_json::json!({"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
            "completion_tokens_details": {"reasoning_tokens": 128}});
        let u = Usage::from_openai(&v).expect("usage");
        assert_eq!(u.input_tokens, 2006);
        assert_eq!(u.cached_input_tokens, 1920);
        assert_eq!(u.reasoning_tokens, 128);
        assert_eq!(u.total(), 2306);
    }

    #[test]
    fn anthropic_cache_tokens_are_added_once() {
        let v = serde_json::json!({"input_tokens": 50, "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 1000, "output_tokens": 30});
        let u = Usage::from_anthropic(&v);
        assert_eq!(u.input_tokens, 1250);
        assert_eq!(u.cached_input_tokens, 1000);
        assert_eq!(u.cache_write_tokens, 200);
        assert_eq!(u.to_anthropic(), v, "round trip");
        assert_eq!(
            Usage::from_openai(&u.to_openai()).map(|o| o.input_tokens),
            Some(1250)
        );
    }

    #[test]
    fn gemini_thoughts_are_output() {
        let v = serde_json::json!({"promptTokenCount": 900, "candidatesTokenCount": 40,
            "cachedContentTokenCount": 512, "thoughtsTokenCount": 60, "totalTokenCount": 1000});
        let u = Usage::from_gemini(&v);
        assert_eq!((u.input_tokens, u.output_tokens), (900, 100));
        assert_eq!((u.cached_input_tokens, u.reasoning_tokens), (512, 60));
        assert_eq!(u.total(), 1000);
    }

    #[test]
    fn missing_prompt_tokens_is_not_usage() {
        assert!(Usage::from_openai(&serde_json::json!({"foo": 1})).is_none());
    }
}
