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
            cache_write_tokens: 0,
            reasoning_tokens: completion_details
                .and_then(|d| n(d, "reasoning_tokens"))
                .unwrap_or(0),
        })
    }

    /// Total tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
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
    fn missing_prompt_tokens_is_not_usage() {
        assert!(Usage::from_openai(&serde_json::json!({"foo": 1})).is_none());
    }
}
