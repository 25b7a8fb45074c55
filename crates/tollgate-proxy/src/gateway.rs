//! [`Gateway`]: the Pingora `ProxyHttp` implementation that serves every client request.

use crate::auth::identify;
use crate::body::read_bounded;
use crate::context::{Operation, RequestCtx};
use crate::health::HealthRegistry;
use crate::live::{LiveState, model_object};
use crate::llm::{self, Payload};
use crate::metrics::{RequestRecord, record_request};
use crate::respond::{model_not_found, send_error, send_json};
use crate::routes::{NoRoute, Route, match_route};
use crate::spend::Spend;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use tollgate_types::{ApiError, ClientApi, ErrorKind};

/// The gateway service: live state plus the pooled upstream connector.
pub struct Gateway {
    live: Arc<ArcSwap<LiveState>>,
    connector: Connector,
    health: Arc<HealthRegistry>,
    spend: Arc<Spend>,
}

impl Gateway {
    /// A gateway serving `live`, connecting upstream through `connector`.
    pub fn new(
        live: Arc<ArcSwap<LiveState>>,
        connector: Connector,
        health: Arc<HealthRegistry>,
        spend: Arc<Spend>,
    ) -> Self {
        Gateway {
            live,
            connector,
            health,
            spend,
        }
    }

    async fn handle(&self, session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<()> {
        let req = session.req_header();
        let route = match match_route(req.method.as_str(), req.uri.path()) {
            Ok(route) => route,
            Err(no) => {
                let (kind, what) = match no {
                    NoRoute::NotFound => (ErrorKind::NotFound, "Unknown request URL"),
                    NoRoute::WrongMethod => (ErrorKind::MethodNotAllowed, "Method not allowed for"),
                };
                let msg = format!("{what}: {} {}", req.method, req.uri.path());
                session.set_keepalive(None);
                return send_error(session, ctx, &ApiError::new(kind, msg)).await;
            }
        };
        match route {
            Route::Liveliness => {
                ctx.operation = Operation::Health;
                send_json(
                    session,
                    ctx,
                    200,
                    Bytes::from_static(b"{\"status\":\"alive\"}"),
                    &[],
                )
                .await
            }
            Route::Readiness => {
                ctx.operation = Operation::Health;
                let body =
                    serde_json::json!({"status": "ready", "models": ctx.state.config.models.len()});
                send_json(session, ctx, 200, Bytes::from(body.to_string()), &[]).await
            }
            Route::Models
            | Route::Model(_)
            | Route::ChatCompletions
            | Route::Embeddings
            | Route::Messages => {
                if route == Route::Messages {
                    // Set first, so even an authentication error is Anthropic-shaped.
                    ctx.client_api = ClientApi::Anthropic;
                }
                match identify(session.req_header(), &ctx.state, &self.spend.keys) {
                    Ok(key) => {
                        if let Some(k) = key {
                            ctx.identify_as(k);
                        }
                        ctx.tags = crate::routing::header_tags(session.req_header());
                    }
                    Err(e) => {
                        session.set_keepalive(None); // the body, if any, stays unread
                        return send_error(session, ctx, &e).await;
                    }
                }
                self.handle_api(session, ctx, route).await
            }
        }
    }

    async fn handle_api(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: Route,
    ) -> pingora::Result<()> {
        let operation = match route {
            Route::Models => {
                let body = ctx.state.models_list.clone();
                return send_json(session, ctx, 200, body, &[]).await;
            }
            Route::Model(id) => {
                if ctx.state.model(&id).is_some() {
                    let body = Bytes::from(model_object(&id).to_string());
                    return send_json(session, ctx, 200, body, &[]).await;
                }
                return send_error(session, ctx, &model_not_found(&id)).await;
            }
            Route::ChatCompletions | Route::Messages => Operation::Chat,
            Route::Embeddings => Operation::Embeddings,
            Route::Liveliness | Route::Readiness => return Ok(()),
        };
        ctx.operation = operation;
        let limit = ctx.state.config.limits.max_request_bytes;
        let body = match read_bounded(session, limit).await {
            Ok(b) => b,
            Err(e) => {
                session.set_keepalive(None);
                return send_error(session, ctx, &e).await;
            }
        };
        if ctx.client_api == ClientApi::Anthropic {
            ctx.messages_body = Some(body.clone());
        }
        match Payload::parse(operation, ctx.client_api, &body) {
            Ok(payload) => {
                ctx.request_bytes = body.len();
                llm::serve(
                    session,
                    ctx,
                    &self.connector,
                    &self.health,
                    &self.spend,
                    payload,
                )
                .await
            }
            Err(e) => send_error(session, ctx, &e).await,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// Loads the live state once; the request keeps this version to its end.
    fn new_ctx(&self) -> RequestCtx {
        let mut ctx = RequestCtx::new(self.live.load_full());
        ctx.spend = Some(self.spend.clone());
        ctx
    }

    /// Never reached: every request is answered in `request_filter`.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        Err(pingora::Error::explain(
            pingora::ErrorType::InternalError,
            "tollgate serves every route in request_filter",
        ))
    }

    /// Serves the request entirely and returns `Ok(true)`, so Pingora's proxy phases never run.
    /// A failed write to the client only disables keep-alive: there is no one left to tell.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        if let Err(e) = self.handle(session, ctx).await {
            tracing::debug!(request_id = %ctx.request_id, error = %e, "Client write failed.");
            session.set_keepalive(None);
        }
        Ok(true)
    }

    /// Records metrics and the request log line.
    async fn logging(
        &self,
        _session: &mut Session,
        _e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        if ctx.operation == Operation::Health {
            return;
        }
        ctx.keep_prior_spend();
        self.spend.settle(ctx).await;
        let duration = ctx.started.elapsed();
        let provider = ctx.served_by.as_ref().map_or("none", |(p, _)| p.as_str());
        record_request(&RequestRecord {
            operation: ctx.operation.as_str(),
            llm: ctx.operation.is_llm(),
            model: ctx.model.as_deref().unwrap_or("unknown"),
            provider,
            status: ctx.status,
            duration,
            ttft: ctx.ttft,
            usage: ctx.usage,
            cost: ctx.cost,
        });
        if ctx.operation.is_llm() {
            tracing::info!(
                request_id = %ctx.request_id,
                tenant = ctx.tenant.as_deref().unwrap_or("-"),
                model = ctx.model.as_deref().unwrap_or("-"),
                provider,
                upstream_model = ctx.served_by.as_ref().map_or("-", |(_, m)| m.as_str()),
                status = ctx.status,
                attempts = ctx.attempts,
                duration_ms = duration.as_millis() as u64,
                ttft_ms = ctx.ttft.map(|t| t.as_millis() as u64),
                input_tokens = ctx.usage.map(|u| u.input_tokens),
                output_tokens = ctx.usage.map(|u| u.output_tokens),
                cached_input_tokens = ctx.usage.map(|u| u.cached_input_tokens),
                usage_estimated = ctx.usage_estimated,
                cost_usd = ctx.cost.map(tracing::field::display),
                error = ctx.error.as_deref(),
                "Request finished."
            );
        }
    }
}
