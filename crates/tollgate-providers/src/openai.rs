//! The OpenAI wire dialect, shared by OpenAI, Azure OpenAI, Mistral, DeepSeek, Groq, Together,
//! Fireworks, OpenRouter, Ollama, vLLM and llama.cpp. Flavours differ only in URL and auth.

use crate::request::http_request;
use crate::{AdapterError, ResponseInfo, UpstreamRequest};
use serde::Serialize;
use serde_json::{Map, Value};
use tollgate_config::{ProviderConfig, ProviderKind};
use tollgate_types::{ChatRequest, EmbeddingsRequest, Message, StreamOptions, Usage};

/// URL flavour of the OpenAI dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiDialect {
    /// `{base_url}/chat/completions`.
    Standard,
    /// `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`.
    Azure,
}

/// The chat body, borrowing from the canonical request so no message is copied per attempt.
#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<&'a StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct EmbeddingsBody<'a> {
    model: &'a str,
    input: &'a Value,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl OpenAiDialect {
    pub(crate) fn chat_request(
        self,
        p: &ProviderConfig,
        req: &ChatRequest,
        model: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        // Gemini thought signatures ride in tool-call ids; OpenAI caps ids at 40 characters.
        let messages = crate::call_id::strip_signatures(&req.messages);
        // OpenAI's reasoning models refuse the deprecated `max_tokens`; every OpenAI model takes
        // `max_completion_tokens`, which clients of other APIs (`/v1/messages`) cannot name.
        let (max_tokens, max_completion_tokens) = match (p.kind, req.max_completion_tokens) {
            (ProviderKind::OpenAi, None) => (None, req.max_tokens),
            _ => (req.max_tokens, req.max_completion_tokens),
        };
        // Ask for the usage chunk the client did not, so the stream can be priced; the
        // transcoder keeps it from the client (`StreamObserver::stripping_usage`).
        let with_usage;
        let stream_options = if p.stream_usage && req.is_stream() && !req.wants_stream_usage() {
            with_usage = StreamOptions {
                include_usage: Some(true),
                extra: req
                    .stream_options
                    .as_ref()
                    .map(|o| o.extra.clone())
                    .unwrap_or_default(),
            };
            Some(&with_usage)
        } else {
            req.stream_options.as_ref()
        };
        let body = serde_json::to_vec(&ChatBody {
            model,
            messages: &messages,
            stream: req.stream,
            stream_options,
            max_tokens,
            max_completion_tokens,
            user: req.user.as_deref(),
            extra: &req.extra,
        })
        .map_err(AdapterError::Encode)?;
        Ok(self.request(p, model, "chat/completions", body, req.is_stream()))
    }

    pub(crate) fn embeddings_request(
        self,
        p: &ProviderConfig,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        let body = serde_json::to_vec(&EmbeddingsBody {
            model,
            input: &req.input,
            extra: &req.extra,
        })
        .map_err(AdapterError::Encode)?;
        Ok(self.request(p, model, "embeddings", body, false))
    }

    fn request(
        self,
        p: &ProviderConfig,
        model: &str,
        endpoint: &str,
        body: Vec<u8>,
        stream: bool,
    ) -> UpstreamRequest {
        let base = &p.base_url.path;
        let path = match self {
            OpenAiDialect::Standard => format!("{base}/{endpoint}"),
            OpenAiDialect::Azure => {
                // Accept both `https://RES.openai.azure.com` and `.../openai` as the base.
                let root = base.strip_suffix("/openai").unwrap_or(base);
                format!(
                    "{root}/openai/deployments/{model}/{endpoint}?api-version={}",
                    p.api_version
                )
            }
        };
        http_request(p, path, body, stream)
    }
}

/// Reads usage from an OpenAI-shaped chat or embeddings response.
pub(crate) fn parse_response(body: &[u8]) -> Result<ResponseInfo, AdapterError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        usage: Option<Value>,
    }
    let env: Envelope = serde_json::from_slice(body).map_err(AdapterError::Decode)?;
    Ok(ResponseInfo {
        usage: env.usage.as_ref().and_then(usage_from_openai_family),
    })
}

/// OpenAI usage, plus DeepSeek's `prompt_cache_hit_tokens` where OpenAI's details are absent.
pub(crate) fn usage_from_openai_family(v: &Value) -> Option<Usage> {
    let mut u = Usage::from_openai(v)?;
    if u.cached_input_tokens == 0
        && let Some(hit) = v.get("prompt_cache_hit_tokens").and_then(Value::as_u64)
    {
        u.cached_input_tokens = hit;
    }
    Some(u)
}

/// Reads an OpenAI-family error body (`{"error":{...}}`, or Mistral's top-level shape):
/// `(type or code, message)`.
pub(crate) fn decode_error(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
    let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    let message =
        s("message").or_else(|| v.get("error").and_then(Value::as_str).map(str::to_owned));
    // A known `code` (`context_length_exceeded`) says more than a generic `type`; Azure's
    // codes are HTTP statuses as strings, which say nothing the status does not.
    let code = s("code").filter(|c| crate::classify::kind_of_type(c).is_some());
    let kind = code.or_else(|| s("type")).or_else(|| s("code"));
    match (kind, message) {
        (Some(kind), message) => Some((kind, message.unwrap_or_default())),
        // `{"error": "bad schema"}` and the like: a message without a type.
        (None, Some(message)) => Some(("invalid_request_error".to_owned(), message)),
        (None, None) => None,
    }
}
