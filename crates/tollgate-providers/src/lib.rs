//! Provider adapters: pure functions between Tollgate's canonical types and each provider's wire
//! format. No I/O happens here; the proxy owns every socket.
//!
//! - [`Adapter`]: a closed enum (one variant per wire dialect), chosen from a provider's kind.
//!   [`Adapter::chat_request`] / [`Adapter::embeddings_request`] build an [`UpstreamRequest`]
//!   (path, headers, body) afresh for every attempt.
//! - [`Adapter::parse_chat_response`] reads usage out of a JSON answer.
//! - [`StreamObserver`]: fed each SSE body chunk as it passes through; notes the first token,
//!   usage, `[DONE]` and in-stream errors without holding the chunk back.
//! - [`classify_status`]: the one place an upstream status becomes a [`Disposition`].

mod classify;
mod error;
mod openai;
mod sse;

pub use classify::{Disposition, classify_status};
pub use error::AdapterError;
pub use openai::OpenAiDialect;
pub use sse::{SseEvent, SseSplitter, StreamObserver, StreamSignal};

use bytes::Bytes;
use tollgate_config::{ProviderConfig, ProviderKind};
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

/// A wire dialect. Anthropic and Gemini join as new variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// OpenAI's Chat Completions and Embeddings APIs, with per-provider URL and auth flavours.
    OpenAi(OpenAiDialect),
}

impl Adapter {
    /// The adapter for a provider kind.
    pub fn for_kind(kind: ProviderKind) -> Adapter {
        match kind {
            ProviderKind::Azure => Adapter::OpenAi(OpenAiDialect::Azure),
            _ => Adapter::OpenAi(OpenAiDialect::Standard),
        }
    }

    /// Builds a chat completions request for `upstream_model`.
    pub fn chat_request(
        self,
        provider: &ProviderConfig,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> Result<UpstreamRequest, AdapterError> {
        match self {
            Adapter::OpenAi(d) => d.chat_request(provider, req, upstream_model),
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
        }
    }

    /// Reads what the proxy needs from a complete chat or embeddings response body.
    pub fn parse_response(self, body: &[u8]) -> Result<ResponseInfo, AdapterError> {
        match self {
            Adapter::OpenAi(_) => openai::parse_response(body),
        }
    }

    /// A fresh observer for one streamed response.
    pub fn stream_observer(self) -> StreamObserver {
        StreamObserver::default()
    }
}
