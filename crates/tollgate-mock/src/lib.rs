//! The built-in mock LLM provider: a product feature for demos, tests and benchmarks.
//!
//! It answers deterministically from the prompt (the last user turn's text and the token cap
//! give the same answer text in every format), with realistic usage, and injects faults on
//! request. Routes:
//!
//! - OpenAI: `POST /v1/chat/completions` (JSON or SSE, forced tool calls, logprobs),
//!   `POST /v1/embeddings`, `GET /v1/models`.
//! - Anthropic Messages: `POST /v1/messages` (JSON or SSE, forced `tool_use`).
//! - Gemini: `POST {any prefix}/models/{model}:generateContent` and `:streamGenerateContent`
//!   (SSE with `?alt=sse`, else a streamed JSON array; forced `functionCall`).
//!
//! The `/v1` prefix is optional on the OpenAI and Anthropic routes; anything else is a 404.
//! Each route is one wire-format renderer of a format-neutral answer, so new formats slot into
//! the router in `http.rs`.
//!
//! - [`MockConfig`]: server-wide defaults (stream timing).
//! - [`Faults`]: per-request behaviour from `x-mock-*` headers, on every route (see that type
//!   for the list).
//! - [`spawn`] runs it on a tokio runtime and returns a [`MockHandle`] with call counters;
//!   [`serve`] runs it on a listener you own.

mod answer;
mod anthropic;
mod chat;
mod control;
mod embeddings;
mod faults;
mod gemini;
mod http;
mod sim;
mod stream;
#[cfg(test)]
mod tests;
mod text;

pub use faults::Faults;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Server-wide behaviour of the mock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Delay before the first streamed chunk.
    pub ttft: Duration,
    /// Delay between streamed chunks.
    pub chunk_delay: Duration,
    /// Content chunks per streamed answer.
    pub chunks: u32,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            ttft: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: 8,
        }
    }
}

/// Counters a test can assert on.
#[derive(Debug, Default)]
pub struct MockStats {
    requests: AtomicU64,
    last_body_bytes: AtomicU64,
    control: control::Control,
}

impl MockStats {
    /// Requests received, any route.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Body size of the most recent request.
    pub fn last_body_bytes(&self) -> u64 {
        self.last_body_bytes.load(Ordering::Relaxed)
    }

    fn record(&self, body_len: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.last_body_bytes
            .store(body_len as u64, Ordering::Relaxed);
    }
}

/// A running mock.
#[derive(Debug, Clone)]
pub struct MockHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<MockStats>,
}

impl MockHandle {
    /// `http://ADDR/v1`, the base URL to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

/// Binds `addr` and serves the mock on the current tokio runtime.
pub async fn spawn(addr: &str, config: MockConfig) -> std::io::Result<MockHandle> {
    let listener = TcpListener::bind(addr).await?;
    let handle = MockHandle {
        addr: listener.local_addr()?,
        stats: Arc::default(),
    };
    tokio::spawn(serve(listener, config, handle.stats.clone()));
    Ok(handle)
}

/// Serves the mock on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: MockConfig, stats: Arc<MockStats>) {
    http::accept_loop(listener, Arc::new(config), stats).await;
}
