//! The `rhai` scorer: a script's `on_response(req, resp, ctx)` accepts, escalates or scores.

use super::Captured;
use super::score::{TierAt, answer_text, token_logprobs};
use crate::context::RequestCtx;
use crate::routing::{Shared, context_view, request_view};
use pingora::proxy::Session;
use serde_json::Value;
use std::path::PathBuf;
use tollgate_policy::{ResponseVerdict, ResponseView};

/// The script's score: accept is 1, escalate 0. A script that fails, or has no
/// `on_response`, abstains (a failure is logged and counted as a policy error), so the other
/// scorers decide.
pub fn score(
    session: &Session,
    ctx: &RequestCtx,
    at: &TierAt<'_>,
    captured: &Captured,
    script: Option<&PathBuf>,
    others: Option<f64>,
) -> Option<f64> {
    let TierAt {
        up, req, number, ..
    } = *at;
    let state = ctx.state.clone();
    let model = state.model(&req.model)?;
    let path = script.or_else(|| model.policy(&state.config))?;
    let Some(compiled) = state.policies.script(path).filter(|s| s.has_on_response) else {
        tracing::warn!(request_id = %ctx.request_id, script = %path.display(),
            "The cascade's scoring script has no `on_response(req, resp, ctx)`; it abstains.");
        return None;
    };
    let json = &captured.json;
    let logprobs = token_logprobs(json);
    let resp = ResponseView {
        text: answer_text(json).unwrap_or_default().into(),
        finish_reason: json
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into(),
        output_tokens: captured
            .usage
            .map_or(0, |u| i64::try_from(u.output_tokens).unwrap_or(i64::MAX)),
        has_tool_calls: json
            .pointer("/choices/0/message/tool_calls")
            .is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty())),
        mean_logprob: (!logprobs.is_empty())
            .then(|| logprobs.iter().sum::<f64>() / logprobs.len() as f64),
        tier: i64::try_from(number).unwrap_or(i64::MAX),
        score: others,
    };
    let view = request_view(ctx, &state, session.req_header(), req);
    let shared = Shared {
        health: up.health,
        budget_remaining: None,
    };
    let context = context_view(&state, model, &shared);
    let started = std::time::Instant::now();
    let verdict = state
        .policies
        .engine
        .on_response(compiled, &view, &resp, &context);
    state.policies.record_run(path, started.elapsed());
    match verdict {
        Ok(ResponseVerdict::Accept) => Some(1.0),
        Ok(ResponseVerdict::Escalate) => Some(0.0),
        Ok(ResponseVerdict::Score(s)) => Some(s),
        Err(e) => {
            crate::metrics::record_policy_error(&e.file, e.kind.as_str());
            tracing::warn!(request_id = %ctx.request_id, error = %e,
                "The cascade's scoring script failed; it abstains.");
            None
        }
    }
}
