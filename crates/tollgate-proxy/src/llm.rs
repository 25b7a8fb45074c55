//! The LLM endpoints: parse, resolve the model, try its targets in order, forward the answer.
//!
//! Pingora's own retry path replays at most 64 KiB of request body, so these endpoints are
//! served entirely here: the parsed request stays in hand, and each attempt gets a request built
//! afresh by the provider's adapter. Failover is possible until the first byte reaches the client.

use crate::context::{Operation, RequestCtx};
use crate::failover::Plan;
use crate::health::HealthRegistry;
use crate::live::Provider;
use crate::respond::{model_not_found, send_error};
use crate::routing::{Routed, route_chat};
use crate::spend::Spend;
use pingora::connectors::http::Connector;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::Duration;
use tollgate_config::Target;
use tollgate_providers::{Adapter, UpstreamRequest, parse_messages_request, passthrough_request};
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

    /// The most output tokens the request allows (embeddings generate none).
    pub fn output_cap(&self) -> Option<u32> {
        match self {
            Payload::Chat(r) => r.output_cap(),
            Payload::Embeddings(_) => Some(0),
        }
    }

    /// How many answers the request asks for (`n`): each is priced.
    pub fn choices(&self) -> u64 {
        match self {
            Payload::Chat(r) => r
                .extra
                .get("n")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1)
                .max(1),
            Payload::Embeddings(_) => 1,
        }
    }

    /// Whether the client asked for SSE.
    pub fn is_stream(&self) -> bool {
        matches!(self, Payload::Chat(r) if r.is_stream())
    }

    /// Builds the upstream request for one attempt. `messages_body` is a `/v1/messages`
    /// client's own body: an Anthropic provider gets it whole rather than a translation.
    pub fn build(
        &self,
        provider: &Provider,
        upstream_model: &str,
        messages_body: Option<&bytes::Bytes>,
    ) -> Result<UpstreamRequest, String> {
        let built = match (self, messages_body) {
            (Payload::Chat(r), Some(raw)) if provider.adapter == Adapter::Anthropic => {
                passthrough_request(&provider.config, raw, upstream_model, r.is_stream())
            }
            (Payload::Chat(r), _) => {
                provider
                    .adapter
                    .chat_request(&provider.config, r, upstream_model)
            }
            (Payload::Embeddings(r), _) => {
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
    spend: &Arc<Spend>,
    mut payload: Payload,
) -> pingora::Result<()> {
    let state = ctx.state.clone();
    let Some(mut model) = state.model(payload.model()) else {
        return send_error(session, ctx, &model_not_found(payload.model())).await;
    };
    ctx.model = Some(model.name.clone());
    let header = |name: &str| {
        session
            .req_header()
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    ctx.user = header("x-tollgate-user").or_else(|| match &payload {
        Payload::Chat(r) => r.user.clone(),
        Payload::Embeddings(_) => None,
    });
    ctx.session = header("x-tollgate-session");
    if let Payload::Chat(req) = &mut payload {
        match crate::plugins::on_request(ctx, session.req_header(), req).await {
            Ok(false) => {}
            Ok(true) => {
                // A plugin chose another alias: the rest of the pipeline serves that one.
                let Some(chosen) = state.model(&req.model) else {
                    let e = model_not_found(&req.model);
                    return send_error(session, ctx, &e).await;
                };
                model = chosen;
                ctx.model = Some(model.name.clone());
            }
            Err(e) => return send_error(session, ctx, &e).await,
        }
        if let Err(e) = crate::guard::check_request(ctx, req) {
            return send_error(session, ctx, &e).await;
        }
        if let Err(e) = crate::structured::prepare(ctx, req) {
            return send_error(session, ctx, &e).await;
        }
        if req.is_stream() {
            ctx.stream_check = state
                .guardrails
                .stream(&model.name)
                .map(crate::guard::StreamGuardrails::new);
        }
    }
    // The request's total deadline: the model's, tightened by the client if it asks.
    let asked = session
        .req_header()
        .headers
        .get("x-tollgate-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis);
    let budget = asked.map_or(model.timeout, |a| a.min(model.timeout));
    let started = tokio::time::Instant::from_std(ctx.started);
    let deadline = started
        .checked_add(budget)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    // Scripts see the room left in the request's budgets; only they need it.
    let budget_remaining = if model.policy(&state.config).is_some() {
        spend.remaining(ctx).await
    } else {
        None
    };
    let routed = match &mut payload {
        Payload::Chat(req) => {
            match route_chat(
                ctx,
                session.req_header(),
                req,
                model,
                health,
                budget_remaining,
            ) {
                Ok(r) => r,
                Err(e) => return send_error(session, ctx, &e).await,
            }
        }
        Payload::Embeddings(_) => Routed {
            targets: state.attempt_order(model, health),
            cascade: None,
        },
    };
    let Routed { targets, cascade } = routed;
    if let (Payload::Chat(req), Some(cascade)) = (&payload, cascade) {
        // Every tier may answer, and every judge grade: the request reserves for all of them.
        let mut reserve: Vec<Vec<Target>> =
            cascade.tiers.iter().map(|t| t.targets.clone()).collect();
        reserve.extend(
            cascade
                .judges()
                .filter_map(|j| state.model(j).map(|m| m.targets.clone())),
        );
        if let Err(e) = spend.admit(ctx, &payload, &reserve, deadline).await {
            return send_error(session, ctx, &e).await;
        }
        let up = crate::cascade::Upstream {
            connector,
            health,
            retries: model.retries,
            deadline,
        };
        return crate::cascade::run(session, ctx, &up, req, &cascade).await;
    }
    let targets = match crate::plugins::route(ctx, targets).await {
        Ok(t) => t,
        Err(e) => return send_error(session, ctx, &e).await,
    };
    if let Err(e) = spend
        .admit(ctx, &payload, std::slice::from_ref(&targets), deadline)
        .await
    {
        return send_error(session, ctx, &e).await;
    }
    let plan = || Plan {
        targets: targets.clone(),
        retries: model.retries,
        deadline,
    };
    match crate::failover::try_answer(session, ctx, connector, health, &mut payload, plan).await {
        Ok(()) => Ok(()),
        Err(e) => send_error(session, ctx, &e).await,
    }
}
