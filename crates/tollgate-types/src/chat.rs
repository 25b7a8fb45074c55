//! The canonical chat request: OpenAI's Chat Completions shape, with passthrough of unknown fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat completion request as Tollgate understands it.
///
/// Only the fields the gateway reads or rewrites are typed; everything else (`tools`,
/// `response_format`, `logprobs`, `seed`, ...) lives in `extra` and is re-serialised as it came.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The public model alias the client asked for; rewritten to the upstream model per attempt.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Whether the client wants Server-Sent Events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Legacy output cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Output cap for newer OpenAI models (includes reasoning tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// Whether the client asked for an SSE stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for a final usage chunk in the stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage.unwrap_or(false))
    }

    /// Whether the request offers tools to the model.
    pub fn has_tools(&self) -> bool {
        self.extra
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    }

    /// The output token cap the client set, if any.
    pub fn output_cap(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `stream_options` of a chat request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask the provider for a final chunk carrying `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Other options, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, an array of content parts, or null (assistant messages with tool calls).
    #[serde(default)]
    pub content: Value,
    /// Everything else (`name`, `tool_calls`, `tool_call_id`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// The message's text: the string content, or its text parts joined by newlines.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

/// An embeddings request (`/v1/embeddings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// The public model alias.
    pub model: String,
    /// A string, an array of strings, or token arrays.
    pub input: Value,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}],
            "seed":7,"response_format":{"type":"json_object"},"logprobs":true}"#;
        let req: ChatRequest = serde_json::from_str(body).expect("parse");
        let back: Value = serde_json::to_value(&req).expect("serialise");
        assert_eq!(back["seed"], 7);
        assert_eq!(back["response_format"]["type"], "json_object");
        assert_eq!(back["messages"][0]["name"], "bob");
        assert!(back.get("stream").is_none(), "absent fields stay absent");
    }

    #[test]
    fn text_of_parts_joins_text_parts_only() {
        let m: Message = serde_json::from_value(serde_json::json!({
            "role": "user",
            "content": [{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]
        }))
        .expect("parse");
        assert_eq!(m.text(), "a\nb");
    }

    #[test]
    fn stream_usage_flag() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .expect("parse");
        assert!(req.is_stream());
        assert!(req.wants_stream_usage());
    }
}
