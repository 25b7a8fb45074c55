//! Provider adapters: pure functions between Tollgate's canonical types and each provider's wire
//! format. No I/O happens here; the proxy owns every socket.
//!
//! - [`Adapter`]: a closed enum, one variant per wire dialect (OpenAI and its flavours,
//!   Anthropic Messages, Gemini), chosen from a provider's config.
//!   [`Adapter::chat_request`] / [`Adapter::embeddings_request`] build an [`UpstreamRequest`]
//!   (path, headers, body) afresh for every attempt.
//! - [`Adapter::translate_response`]: a complete answer in the client's dialect, plus usage.
//! - [`StreamTranscoder`]: the same for SSE, chunk by chunk. OpenAI to OpenAI passes bytes
//!   through and only observes them ([`StreamObserver`]); other pairs decode to canonical
//!   [`ChatEvent`]s and encode those.
//! - [`parse_messages_request`]: the inbound Anthropic Messages API, as a canonical request.
//! - [`classify_status`] / [`UpstreamError`]: the one place an upstream status and error body
//!   become a [`Disposition`] and a kind.

mod answer_text;
mod anthropic;
mod call_id;
mod classify;
mod completion;
mod error;
mod events;
mod gemini;
mod messages;
mod openai;
mod openai_stream;
mod request;
mod sse;
mod transcode;

pub use anthropic::{default_max_tokens, passthrough_request};
pub use classify::{Disposition, UpstreamError, UpstreamErrorKind, classify_status};
pub use error::AdapterError;
pub use events::{ChatEvent, FinishReason};
pub use messages::parse_messages_request;
pub use openai::OpenAiDialect;
pub use sse::{SseEvent, SseSplitter, StreamObserver, StreamSignal};
pub use transcode::{EventDecoder, StreamTranscoder, Transcoded, Translated};

use bytes::Bytes;
use tollgate_config::{ProviderConfig, ProviderKind, WireFormat};
use tollgate_types::{ChatRequest, EmbeddingsRequest, Usage};

/// An upstream HTTP request, ready to be written by the proxy. Its `Debug` output shows header
/// names only: values include the provider key.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// `POST` or `GET`.
    pub method: &'static str,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Headers, including `host`, `content-type`, `content-length` and credentials.
    pub headers: Vec<(std::borrow::Cow<'static, str>, String)>,
    /// The body.
    pub body: Bytes,
}

impl std::fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_ref()).collect();
        f.debug_struct("UpstreamRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What the proxy learned from a complete (non-streamed) response body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Token usage, if the provider reported it.
    pub usage: Option<Usage>,
}

/// A wire dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// OpenAI's Chat Completions and Embeddings APIs, with per-provider URL and auth flavours.
    OpenAi(OpenAiDialect),
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API.
    Gemini,
}

impl Adapter {
    /// The adapter for a provider kind.
    pub fn for_kind(kind: ProviderKind) -> Adapter {
        match kind {
            ProviderKind::Azure => Adapter::OpenAi(OpenAiDialect::Azure),
            ProviderKind::Anthropic => Adapter::Anthropic,
            ProviderKind::Gemini => Adapter::Gemini,
            _ => Adapter::OpenAi(OpenAiDialect::Standard),
        }
    }

    /// The adapter for a configured provider (a mock speaks the format its `wire` names).
    pub fn for_provider(p: &ProviderConfig) -> Adapter {
        match p.wire {
            WireFormat::OpenAi => Adapter::for_kind(p.kind),
            WireFormat::Anthropic => Adapter::Anthropic,
            WireFormat::Gemini => Adapter::Gemini,
        }
    }

    /// Builds a chat request for `upstream_model`.
    pub fn chat_request(
        self,
        provider: &ProviderConfig,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        match self {
            Adapter::OpenAi(d) => d.chat_request(provider, req, upstream_model),
            Adapter::Anthropic => anthropic::chat_request(provider, req, upstream_model),
            Adapter::Gemini => gemini::chat_request(provider, req, upstream_model),
        }
    }

    /// Builds an embeddings request for `upstream_model`.
    pub fn embeddings_request(
        self,
        provider: &ProviderConfig,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        match self {
            Adapter::OpenAi(d) => d.embeddings_request(provider, req, upstream_model),
            Adapter::Anthropic | Adapter::Gemini => Err(AdapterError::Unsupported("embeddings")),
        }
    }

    /// Reads usage from a complete OpenAI-shaped chat or embeddings response body.
    pub fn parse_response(self, body: &[u8]) -> Result<ResponseInfo, AdapterError> {
        match self {
            Adapter::OpenAi(_) => openai::parse_response(body),
            Adapter::Anthropic => Ok(ResponseInfo {
                usage: anthropic::decode_response(body)?.usage,
            }),
            Adapter::Gemini => Ok(ResponseInfo {
                usage: gemini::decode_response(body)?.usage,
            }),
        }
    }

    /// Classifies an error response from this provider.
    pub fn classify_error(self, status: u16, body: &[u8]) -> UpstreamError {
        let decoded = match self {
            Adapter::OpenAi(_) => openai::decode_error(body),
            Adapter::Anthropic => anthropic::decode_error(body),
            Adapter::Gemini => gemini::decode_error(body),
        };
        UpstreamError::classify(status, decoded)
    }

    /// A fresh observer for one streamed OpenAI-format response.
    pub fn stream_observer(self) -> StreamObserver {
        StreamObserver::default()
    }
}
