//! The Tollgate proxy core: a Pingora service that serves the OpenAI-compatible API.
//!
//! Every LLM request is served inside `request_filter` ([`gateway::Gateway`]): the body is read
//! whole under a limit ([`body`]), parsed into canonical types, and each upstream attempt is
//! built afresh by the provider's adapter and driven through Pingora's pooled connector
//! ([`upstream`]). That keeps failover possible for bodies of any size, which Pingora's own
//! 64 KiB retry buffer cannot do. Answers go back whole or as SSE chunk by chunk ([`forward`]).
//!
//! - [`live::LiveState`]: one immutable config version, loaded once per request.
//! - [`server::run`]: assembles the proxy listener, the admin listener ([`admin`]) and any
//!   in-process mock providers, then runs Pingora.
//! - [`metrics`]: every exported metric, named in one place.

pub mod admin;
mod admin_api;
pub mod alerts;
pub mod auth;
pub mod body;
pub mod cascade;
pub mod context;
pub mod failover;
pub mod forward;
pub mod gateway;
pub mod guard;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod live;
pub mod llm;
pub mod metrics;
pub mod plugins;
pub mod reload;
pub mod respond;
pub mod routes;
pub mod routing;
pub mod server;
pub mod sharing;
pub mod spend;
pub mod structured;
pub mod upstream;

pub use server::{ServeError, ServeOptions, run};
