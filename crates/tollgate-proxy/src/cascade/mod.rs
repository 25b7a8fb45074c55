//! Cascades: a cheap tier answers first; its answer is scored, and only an unsure one
//! escalates to the next tier. Every tier's attempt is priced and charged, and the ledger
//! keeps what the request would have cost on the last tier alone.
//!
//! Earlier tiers are asked for a complete (non-streamed) answer, kept rather than sent
//! (`ctx.capturing`). An accepted answer then goes through the usual complete-answer checks
//! and is sent as JSON, or re-emitted as SSE to a streaming client. The last tier is served
//! like any request: streamed live when the client streams.

mod record;
pub mod reemit;
pub mod score;
mod scripted;

pub use record::Record;

use crate::context::{Prior, RequestCtx};
use crate::failover::Plan;
use crate::forward::{Forwarded, Shape, deliver_answer};
use crate::health::HealthRegistry;
use crate::live::Provider;
use crate::llm::Payload;
use crate::upstream::AttemptError;
use pingora::connectors::http::Connector;
use pingora::proxy::Session;
use record::Step;
use serde_json::Value;
use tokio::time::Instant;
use tollgate_config::cascade::{Cascade, ScorerKind, Tier};
use tollgate_providers::{Adapter, OpenAiDialect};
use tollgate_types::{ChatRequest, ClientApi, Message, Usage, Usd};

/// An earlier tier's answer, kept for scoring.
#[derive(Debug)]
pub struct Captured {
    /// The provider's status.
    pub status: u16,
    /// The answer in OpenAI's shape (2xx), or the provider's error body.
    pub json: Value,
    /// Its usage, if reported.
    pub usage: Option<Usage>,
    /// What it cost, if priced.
    pub cost: Option<Usd>,
    /// Provider and upstream model.
    pub served_by: (String, String),
}

/// Keeps an earlier tier's answer instead of sending it (see `deliver_json`).
pub fn capture(
    ctx: &mut RequestCtx,
    status: u16,
    body: bytes::Bytes,
    provider: &Provider,
) -> Result<Forwarded, AttemptError> {
    let served_by = ctx.served_by.clone().unwrap_or_default();
    let (json, usage) = if status < 300 {
        let translated = provider
            .adapter
            .translate_response(ClientApi::OpenAi, body)
            .map_err(|e| AttemptError::Malformed(e.to_string()))?;
        let json = serde_json::from_slice(&translated.body)
            .map_err(|e| AttemptError::Malformed(e.to_string()))?;
        (json, translated.usage)
    } else {
        (serde_json::from_slice(&body).unwrap_or(Value::Null), None)
    };
    let cost = usage.and_then(|u| ctx.state.cost(&served_by.0, &served_by.1, &u));
    ctx.captured = Some(Captured {
        status,
        json,
        usage,
        cost,
        served_by,
    });
    Ok(Forwarded::Done)
}

/// What a cascade needs from the request around it.
pub struct Upstream<'a> {
    /// Connections to providers.
    pub connector: &'a Connector,
    /// Target health.
    pub health: &'a HealthRegistry,
    /// Retries of one target.
    pub retries: u32,
    /// The request's deadline.
    pub deadline: Instant,
}

impl Upstream<'_> {
    fn plan(&self, tier: &Tier) -> Plan {
        Plan {
            targets: tier.targets.clone(),
            retries: self.retries,
            deadline: self.deadline,
        }
    }

    /// Asks the plan's targets for a complete answer and keeps it, or says why none came.
    async fn ask(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        req: ChatRequest,
        plan: Plan,
    ) -> Result<Captured, String> {
        ctx.capturing = true;
        let outcome = crate::failover::try_targets(
            session,
            ctx,
            self.connector,
            self.health,
            &Payload::Chat(req),
            plan,
        )
        .await;
        ctx.capturing = false;
        let captured = ctx.captured.take();
        // Whoever answered this tier (or judged) did not answer the client.
        ctx.served_by = None;
        match (outcome, captured) {
            (Ok(()), Some(c)) => Ok(c),
            // Not reached: a kept answer always ends an attempt with `Ok`.
            (Ok(()), None) => Err("no answer was kept".to_owned()),
            (Err(e), _) => Err(e.message),
        }
    }
}

/// Serves a chat request through its cascade.
pub async fn run(
    session: &mut Session,
    ctx: &mut RequestCtx,
    up: &Upstream<'_>,
    req: &ChatRequest,
    cascade: &Cascade,
) -> pingora::Result<()> {
    let n = cascade.tiers.len();
    let model = ctx.model.clone().unwrap_or_default();
    // Tiers change the request: the client's own `/v1/messages` body no longer says it all.
    ctx.messages_body = None;
    // A stream is buffered only for OpenAI clients (re-emitted in OpenAI's SSE), and only
    // when the config allows the latency that costs.
    let stream = req.is_stream();
    let buffered = !stream || (cascade.stream_first_tier && ctx.client_api == ClientApi::OpenAi);
    let mut record = Record::new(n, strongest(cascade));
    let mut spent = Prior::default();
    // The last unsure answer: served if the tiers after it all fail.
    let mut kept: Option<(usize, f64, Captured)> = None;
    let earlier = if buffered { n - 1 } else { 0 };
    for (i, tier) in cascade.tiers.iter().enumerate().take(earlier) {
        let tier_req = tier_request(req, tier, false);
        let mut captured = match up.ask(session, ctx, tier_req.clone(), up.plan(tier)).await {
            Ok(c) => c,
            Err(why) => {
                tracing::info!(request_id = %ctx.request_id, tier = i + 1, error = %why,
                    "Cascade tier failed; escalating.");
                record.push(Step::failed(i + 1));
                crate::metrics::record_cascade(&model, i + 1, "failed", "none");
                continue;
            }
        };
        let judged_before = spent.cost;
        let mut scored = if captured.status < 300 {
            let at = score::TierAt {
                up,
                req,
                tier,
                number: i + 1,
            };
            score::score(session, ctx, &at, &mut captured, &mut spent).await
        } else {
            score::Scored::refused()
        };
        // The request's JSON-schema guardrail would refuse this answer: a stronger tier may
        // do better.
        if scored.score >= tier.threshold && crate::structured::would_refuse(ctx, &captured.json) {
            scored.score = 0.0;
            scored.decisive = "json_schema_guardrail";
        }
        let accept = captured.status < 300 && scored.score >= tier.threshold;
        let judges = spent
            .cost
            .map(|c| c.saturating_sub(judged_before.unwrap_or(Usd::ZERO)));
        record.push(Step::scored(i + 1, &captured, &scored, accept, judges));
        let decision = if accept { "accept" } else { "escalate" };
        crate::metrics::record_cascade(&model, i + 1, decision, scored.decisive);
        tracing::debug!(request_id = %ctx.request_id, tier = i + 1, score = scored.score,
            threshold = tier.threshold, decision, "Cascade tier scored.");
        if accept {
            record.accept(i + 1, scored.score, ctx, &captured);
            ctx.cascade = Some(record);
            // What came before (escalated tiers, judges) is paid for with this answer.
            if spent != Prior::default() {
                ctx.prior = Some(spent);
            }
            return deliver(session, ctx, req, captured).await;
        }
        spent.add(captured.usage, captured.cost);
        if captured.status < 300 {
            kept = Some((i + 1, scored.score, captured));
        }
    }
    // The last tier's answer is final, and served like any request's.
    let last = &cascade.tiers[n - 1];
    record.finish(spent.cost);
    crate::metrics::record_cascade(&model, n, "final", "none");
    ctx.cascade = Some(record);
    if spent != Prior::default() {
        ctx.prior = Some(spent);
    }
    let mut payload = Payload::Chat(tier_request(req, last, stream));
    let outcome =
        crate::failover::try_answer(session, ctx, up.connector, up.health, &mut payload, || {
            up.plan(last)
        })
        .await;
    let Err(e) = outcome else {
        return Ok(());
    };
    // Every target of the last tier failed: an unsure answer beats none.
    let Some((tier, score, mut captured)) = kept else {
        return crate::respond::send_error(session, ctx, &e).await;
    };
    tracing::warn!(request_id = %ctx.request_id, tier, error = %e.message,
        "The cascade's last tier failed; serving an earlier tier's answer.");
    crate::metrics::record_cascade(&model, n, "failed", "none");
    if let Some(mut record) = ctx.cascade.take() {
        record.fall_back(tier, score, ctx, &captured);
        ctx.cascade = Some(record);
    }
    // Its spend is already in `spent`: the request pays that, no more.
    ctx.prior = Some(spent);
    captured.usage = None;
    deliver(session, ctx, req, captured).await
}

/// The last tier's first target, whose price makes the savings baseline.
fn strongest(cascade: &Cascade) -> Option<(String, String)> {
    let t = cascade.tiers.last()?.targets.first()?;
    Some((t.provider.clone(), t.model.clone()))
}

/// The request a tier sends: the client's, with the tier's overrides, streamed or not.
fn tier_request(req: &ChatRequest, tier: &Tier, stream: bool) -> ChatRequest {
    let mut r = req.clone();
    if !stream {
        r.stream = None;
        r.stream_options = None;
    }
    // A tier may lower the output cap, never raise it past the client's (or its reservation).
    if let Some(n) = tier.max_tokens {
        if let Some(cap) = r.max_completion_tokens.as_mut() {
            *cap = (*cap).min(n);
        } else {
            r.max_tokens = Some(r.max_tokens.map_or(n, |cap| cap.min(n)));
        }
    }
    if let Some(t) = tier.temperature {
        r.extra.insert("temperature".into(), t.into());
    }
    if tier.logprobs {
        r.extra.insert("logprobs".into(), true.into());
    }
    for s in &tier.scorers {
        if let ScorerKind::SelfReport { instruction, .. } = &s.kind {
            r.messages.push(Message {
                role: "system".to_owned(),
                content: instruction.clone().into(),
                extra: serde_json::Map::new(),
            });
        }
    }
    r
}

/// Sends an accepted earlier tier's answer: as JSON, or re-emitted as SSE.
async fn deliver(
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &ChatRequest,
    captured: Captured,
) -> pingora::Result<()> {
    let mut json = captured.json;
    // Log-probabilities the gateway asked for on the client's behalf are not the client's.
    if !req
        .extra
        .get("logprobs")
        .is_some_and(|v| v == &Value::Bool(true))
        && let Some(choices) = json.get_mut("choices").and_then(Value::as_array_mut)
    {
        for c in choices {
            if let Some(lp) = c.get_mut("logprobs") {
                *lp = Value::Null;
            }
        }
    }
    ctx.served_by = Some(captured.served_by);
    ctx.set_usage(captured.usage);
    let mut body = bytes::Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
    if ctx.client_api != ClientApi::OpenAi {
        match Adapter::OpenAi(OpenAiDialect::Standard).translate_response(ctx.client_api, body) {
            Ok(t) => body = t.body,
            Err(e) => {
                let err = tollgate_types::ApiError::new(
                    tollgate_types::ErrorKind::UpstreamFailed,
                    format!("the answer could not be translated: {e}"),
                );
                return crate::respond::send_error(session, ctx, &err).await;
            }
        }
    }
    let shape = if req.is_stream() {
        Shape::Sse {
            include_usage: req.wants_stream_usage(),
        }
    } else {
        Shape::Json
    };
    if deliver_answer(session, ctx, body, shape).await == Forwarded::ClientGone {
        session.set_keepalive(None);
    }
    Ok(())
}
