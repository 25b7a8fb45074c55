//! The OpenAI wire dialect, shared by OpenAI, Azure OpenAI, Mistral, DeepSeek, Groq, Together,
//! Fireworks, OpenRouter, Ollama, vLLM and llama.cpp. Flavours differ only in URL and auth.

use crate::{AdapterError, ResponseInfo, UpstreamRequest};
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use tollgate_config::{AuthStyle, ProviderConfig};
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
        let body = serde_json::to_vec(&ChatBody {
            model,
            messages: &req.messages,
            stream: req.stream,
            stream_options: req.stream_options.as_ref(),
            max_tokens: req.max_tokens,
            max_completion_tokens: req.max_completion_tokens,
            user: req.user.as_deref(),
            extra: &req.extra,
        })
        .map_err(AdapterError::Encode)?;
        let accept = if req.is_stream() {
            "text/event-stream"
        } else {
            "application/json"
        };
        Ok(self.request(p, model, "chat/completions", body, accept))
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
        Ok(self.request(p, model, "embeddings", body, "application/json"))
    }

    fn request(
        self,
        p: &ProviderConfig,
        model: &str,
        endpoint: &str,
        body: Vec<u8>,
        accept: &str,
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
        let mut headers: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(6 + p.headers.len());
        // Configured extra headers first; the protocol headers below are inserted after them
        // and so win on a clash.
        for (name, value) in &p.headers {
            headers.push((Cow::Owned(name.clone()), value.clone()));
        }
        headers.push(("host".into(), p.base_url.authority()));
        headers.push(("content-type".into(), "application/json".to_owned()));
        headers.push(("accept".into(), accept.to_owned()));
        headers.push(("content-length".into(), body.len().to_string()));
        if let Some(key) = &p.api_key {
            let (name, value) = match p.auth {
                AuthStyle::Bearer => ("authorization", format!("Bearer {}", key.expose_secret())),
                AuthStyle::ApiKeyHeader => ("api-key", key.expose_secret().to_owned()),
            };
            headers.push((name.into(), value));
        }
        UpstreamRequest {
            method: "POST",
            path,
            headers,
            body: Bytes::from(body),
        }
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
