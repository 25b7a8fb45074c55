//! The LLM endpoints: parse, resolve the model, try its targets in order, forward the answer.
//!
//! Pingora's own retry path replays at most 64 KiB of request body, so these endpoints are
//! served entirely here: the parsed request stays in hand, and each attempt gets a request built
//! afresh by the provider's adapter. Failover is possible until the first byte reaches the client.

use crate::context::{Operation, RequestCtx};
use crate::forward::{Forwarded, forward_json, forward_stream};
use crate::health::HealthRegistry;
use crate::live::Provider;
use crate::metrics::record_attempt;
use crate::respond::{model_not_found, send_error};
use crate::routing::route_chat;
use crate::upstream::{AttemptError, open, retry_after};
use pingora::connectors::http::Connector;
use pingora::proxy::Session;
use std::sync::Arc;
use tollgate_providers::{Disposition, UpstreamRequest, classify_status, parse_messages_request};
use tollgate_types::{ApiError, ChatRequest, ClientApi, EmbeddingsRequest, ErrorKind};

/// A parsed LLM request.
pub enum Payload {
    /// `/v1/chat/completions`
    Chat(ChatRequest),
    /// `/v1/embeddings`
    Embeddings(EmbeddingsRequest),
}

impl Payload {
    /// Parses `body` for the given operation, in the API the client called.
    pub fn parse(operation: Operation, api: ClientApi, body: &[u8]) -> Result<Payload, ApiError> {
        let invalid = |e: serde_json::Error| {
            let msg = e.to_string();
            let param = ["messages", "model", "input", "max_tokens"]
                .into_iter()
                .find(|f| msg.contains(&format!("`{f}`")));
            let err = ApiError::new(
                ErrorKind::InvalidRequest,
                format!("invalid request body: {msg}"),
            );
            match param {
                Some(p) => err.with_param(p),
                None => err,
            }
        };
        let payload = if operation == Operation::Chat {
            let req: ChatRequest = match api {
                ClientApi::OpenAi => serde_json::from_slice(body),
                ClientApi::Anthropic => parse_messages_request(body),
            }
            .map_err(invalid)?;
            if req.messages.is_empty() {
                return Err(ApiError::new(
                    ErrorKind::InvalidRequest,
                    "`messages` must not be empty",
                )
                .with_param("messages"));
            }
            Payload::Chat(req)
        } else {
            Payload::Embeddings(serde_json::from_slice(body).map_err(invalid)?)
        };
        if payload.model().is_empty() {
            return Err(
                ApiError::new(ErrorKind::InvalidRequest, "`model` must not be empty")
                    .with_param("model"),
            );
        }
        Ok(payload)
    }

    fn model(&self) -> &str {
        match self {
            Payload::Chat(r) => &r.model,
            Payload::Embeddings(r) => &r.model,
        }
    }

    fn is_stream(&self) -> bool {
        matches!(self, Payload::Chat(r) if r.is_stream())
    }

    fn build(&self, provider: &Provider, upstream_model: &str) -> Result<UpstreamRequest, String> {
        let built = match self {
            Payload::Chat(r) => provider
                .adapter
                .chat_request(&provider.config, r, upstream_model),
            Payload::Embeddings(r) => {
                provider
                    .adapter
                    .embeddings_request(&provider.config, r, upstream_model)
            }
        };
        built.map_err(|e| e.to_string())
    }
}

/// Serves one parsed LLM request to the end.
pub async fn serve(
    session: &mut Session,
    ctx: &mut RequestCtx,
    connector: &Connector,
    health: &HealthRegistry,
    mut payload: Payload,
) -> pingora::Result<()> {
    let state = ctx.state.clone();
    let Some(model) = state.model(payload.model()) else {
        return send_error(session, ctx, &model_not_found(payload.model())).await;
    };
    ctx.model = Some(model.name.clone());
    let targets = match &mut payload {
        Payload::Chat(req) => match route_chat(ctx, session.req_header(), req, model, health) {
            Ok(t) => t,
            Err(e) => return send_error(session, ctx, &e).await,
        },
        Payload::Embeddings(_) => state.attempt_order(model),
    };
    let mut failures: Vec<(String, String, AttemptError)> = Vec::new();
    for target in targets {
        let Some(provider) = state.provider(&target.provider) else {
            continue; // validated at load; unreachable unless the config changes shape
        };
        ctx.attempts += 1;
        let id = target.id();
        let started = std::time::Instant::now();
        let in_flight = health.start(&id);
        let outcome = attempt(session, ctx, connector, provider, &target.model, &payload).await;
        drop(in_flight);
        // Time to first token of this attempt, not of the request (which includes earlier ones).
        let ttft = ctx
            .ttft
            .map(|t| t.saturating_sub(started.duration_since(ctx.started)));
        let ok = matches!(outcome, Ok(Forwarded::Done | Forwarded::ClientGone));
        health.record(&id, ok, started.elapsed(), ttft);
        match outcome {
            Ok(Forwarded::Done) => {
                record_attempt(&provider.config.name, "ok");
                return Ok(());
            }
            Ok(Forwarded::Truncated) => {
                // Too late to fail over; the client got an in-stream error event.
                record_attempt(&provider.config.name, "broken");
                return Ok(());
            }
            Ok(Forwarded::ClientGone) => {
                record_attempt(&provider.config.name, "ok");
                session.set_keepalive(None);
                return Ok(());
            }
            Err(e) => {
                ctx.served_by = None;
                record_attempt(&provider.config.name, e.outcome());
                tracing::warn!(request_id = %ctx.request_id, provider = %provider.config.name,
                    model = %target.model, attempt = ctx.attempts, error = %e.summary(),
                    "Upstream attempt failed; trying the next target.");
                failures.push((provider.config.name.clone(), target.model.clone(), e));
            }
        }
    }
    let err = all_failed(&failures);
    send_error(session, ctx, &err).await
}

/// One attempt. `Err` means nothing has reached the client and the next target may be tried.
async fn attempt(
    session: &mut Session,
    ctx: &mut RequestCtx,
    connector: &Connector,
    provider: &Arc<Provider>,
    upstream_model: &str,
    payload: &Payload,
) -> Result<Forwarded, AttemptError> {
    let req = payload
        .build(provider, upstream_model)
        .map_err(AttemptError::Malformed)?;
    let mut opened = open(connector, &provider.config, &req).await?;
    let status = opened.header.status.as_u16();
    match classify_status(status) {
        Disposition::Failover if status == 429 => {
            return Err(AttemptError::RateLimited(retry_after(&opened.header)));
        }
        Disposition::Failover => return Err(AttemptError::Status(status)),
        Disposition::Success | Disposition::ClientError => {}
    }
    ctx.served_by = Some((provider.config.name.clone(), upstream_model.to_owned()));
    let stream = payload.is_stream() && status < 300;
    let result = if stream {
        let include_usage = matches!(payload, Payload::Chat(r) if r.wants_stream_usage());
        forward_stream(session, ctx, &mut opened, provider, include_usage).await
    } else {
        forward_json(session, ctx, &mut opened, provider).await
    };
    if matches!(result, Ok(Forwarded::Done)) && opened.session.response_done() {
        connector
            .release_http_session(opened.session, &opened.peer, None)
            .await;
    }
    result
}

/// The error for a request whose every target failed, with each attempt summarised: 429 (with
/// the shortest `retry-after`) if all were rate-limited, 503 if none could be reached, 504 if all
/// timed out, 502 otherwise.
fn all_failed(failures: &[(String, String, AttemptError)]) -> ApiError {
    if failures.is_empty() {
        return ApiError::new(
            ErrorKind::Unavailable,
            "no upstream target is available for this model",
        );
    }
    let all = |f: fn(&AttemptError) -> bool| failures.iter().all(|(_, _, e)| f(e));
    // Unreachable first: a connect timeout means "could not reach", not "too slow to answer".
    let unreachable = |e: &AttemptError| {
        matches!(
            e,
            AttemptError::Connect(_) | AttemptError::Resolve(_) | AttemptError::Timeout("connect")
        )
    };
    // Every provider said "slow down": pass that on, with the shortest wait any of them asked
    // for, rather than a 5xx the client would retry at once.
    let waits: Vec<Option<std::time::Duration>> = failures
        .iter()
        .filter_map(|(_, _, e)| match e {
            AttemptError::RateLimited(wait) => Some(*wait),
            _ => None,
        })
        .collect();
    let (kind, retry_after) = if waits.len() == failures.len() {
        let shortest = waits
            .iter()
            .flatten()
            .min()
            .map(|d| d.as_secs_f64().ceil() as u64);
        (ErrorKind::RateLimited, shortest)
    } else if failures.iter().all(|(_, _, e)| unreachable(e)) {
        (ErrorKind::Unavailable, None)
    } else if all(|e| matches!(e, AttemptError::Timeout(_))) {
        (ErrorKind::Timeout, None)
    } else {
        (ErrorKind::UpstreamFailed, None)
    };
    let summary: Vec<String> = failures
        .iter()
        .map(|(p, m, e)| format!("{p}/{m}: {}", e.summary()))
        .collect();
    ApiError::new(
        kind,
        format!(
            "all {} upstream attempts failed: {}",
            failures.len(),
            summary.join("; ")
        ),
    )
    .with_code(if kind == ErrorKind::RateLimited {
        "rate_limited"
    } else {
        "upstream_failed"
    })
    .with_retry_after(retry_after)
}
