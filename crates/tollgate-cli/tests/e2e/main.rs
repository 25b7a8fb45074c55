//! End-to-end tests: the real `tollgate` binary in front of in-test mock providers.
//!
//! Each test writes a config, starts `tollgate serve` on free ports, and talks to it over HTTP
//! the way a client would. Mock providers run in the test process so calls can be counted.

mod harness;

// Config validation and `tollgate check`.
mod check;
// Client errors: 400, 401, 404, 405, 413.
mod errors;
// Failover across targets, including bodies far over Pingora's 64 KiB retry buffer.
mod failover;
// SSE streaming: chunk timing, usage, mid-stream failures.
mod streaming;
// Admin listener: metrics and health.
mod admin;
// Zero-downtime binary upgrade.
mod upgrade;
// Rhai routing policies in the request path.
mod policies;
// Hot reload of config and scripts.
mod reload;
// Anthropic and Gemini upstreams, and the inbound Messages API.
mod dialects;
// Retries, deadlines and circuit breakers.
mod resilience;
// Cost of every answer, streamed or not.
mod cost;
// Budgets: reserve, settle, the ledger, restarts.
mod budgets;
// Requests and tokens per minute.
mod limits;
// Keys made, rotated and revoked through the admin API and the CLI; spend reports.
mod keys;
// Webhook alerts on budgets and spend.
mod alerts;
// Built-in guardrails on requests, answers and streams.
mod guardrails;
// Wasm plugins: hooks, hostile guests, hot swaps.
/// Cascades: scorers, escalation, re-emitted streams, tier costs and savings.
mod cascade;
mod plugins;
