//! Routing: turn a model alias into the list of targets to try, running the model's Rhai policy
//! (`on_request`, then `route`) when it has one.

use crate::context::RequestCtx;
use crate::health::HealthRegistry;
use crate::live::LiveState;
use pingora::http::RequestHeader;
use std::sync::Arc;
use tollgate_config::cascade::Cascade;
use tollgate_config::{ModelConfig, OnPolicyError, Target};
use tollgate_policy::{
    ContextData, ContextView, ErrorKind as PolicyErrorKind, Identity, PolicyError, RequestVerdict,
    RequestView, RouteDecision, Script,
};
use tollgate_types::{ApiError, ChatRequest, ErrorKind, Message, Usd};

/// Where a request goes: targets in order, or a cascade of tiers.
#[derive(Debug)]
pub struct Routed {
    /// Targets to try in order (a cascade's: every tier's, for budgets).
    pub targets: Vec<Target>,
    /// The cascade to serve it through: its model's, or one its routing script chose.
    pub cascade: Option<Arc<Cascade>>,
}

impl Routed {
    /// The model's own targets in order, and its cascade.
    fn plain(state: &LiveState, model: &ModelConfig, health: &HealthRegistry) -> Routed {
        Routed {
            targets: state.attempt_order(model, health),
            cascade: model.cascade.clone(),
        }
    }
}

/// Decides the targets for a chat request, applying any changes its policy makes to `req`.
pub fn route_chat(
    ctx: &mut RequestCtx,
    headers: &RequestHeader,
    req: &mut ChatRequest,
    model: &ModelConfig,
    health: &HealthRegistry,
    budget_remaining: Option<Usd>,
) -> Result<Routed, ApiError> {
    let state = ctx.state.clone();
    let Some((path, script)) = model
        .policy(&state.config)
        .and_then(|p| state.policies.script(p).map(|s| (p, s)))
    else {
        return Ok(Routed::plain(&state, model, health));
    };
    let started = std::time::Instant::now();
    let shared = Shared {
        health,
        budget_remaining: budget_remaining.map(Usd::dollars),
    };
    let mut run = || run_policy(ctx, &state, script, headers, req, model, &shared);
    // Scripts are synchronous and run on the worker thread. One that is new or has been slow
    // lately (for instance into its deadline) runs with `block_in_place`, so the requests
    // queued on this worker move to another thread rather than wait behind it, and throttled
    // to half a core, so a script spinning into its deadline cannot starve them of CPU.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let (outcome, slept) = if multi_thread && state.policies.is_slow(path) {
        tokio::task::block_in_place(|| tollgate_policy::run_throttled(run))
    } else {
        (run(), std::time::Duration::ZERO)
    };
    // Judged by its work: the throttle's sleeps would keep a fast script marked slow.
    state
        .policies
        .record_run(path, started.elapsed().saturating_sub(slept));
    match outcome {
        Ok(targets) => Ok(targets),
        Err(Denied(e)) => Err(e),
        Err(Failed(e)) => {
            crate::metrics::record_policy_error(&e.file, e.kind.as_str());
            tracing::warn!(request_id = %ctx.request_id, error = %e, "Routing policy failed.");
            match state.config.policy.on_error {
                // `on_request` may have switched the alias before `route` failed: fall back to
                // the alias the request now names, as logged.
                OnPolicyError::Fallback => Ok(Routed::plain(
                    &state,
                    state.model(&req.model).unwrap_or(model),
                    health,
                )),
                OnPolicyError::Deny => Err(ApiError::new(
                    ErrorKind::Internal,
                    "the routing policy failed",
                )
                .with_code("policy_error")),
            }
        }
    }
}

enum Outcome {
    /// The script refused the request on purpose.
    Denied(ApiError),
    /// The script broke.
    Failed(PolicyError),
}
use Outcome::{Denied, Failed};

fn run_policy(
    ctx: &mut RequestCtx,
    state: &Arc<LiveState>,
    script: &Script,
    headers: &RequestHeader,
    req: &mut ChatRequest,
    model: &ModelConfig,
    shared: &Shared<'_>,
) -> Result<Routed, Outcome> {
    let engine = &state.policies.engine;
    let mut model = model;
    let mut view = request_view(ctx, state, headers, req);
    let context = context_view(state, model, shared);
    if script.has_on_request {
        match engine.on_request(script, &view, &context).map_err(Failed)? {
            RequestVerdict::Allow => {}
            RequestVerdict::Deny { status, message } => {
                return Err(Denied(
                    ApiError::new(ErrorKind::PolicyDenied(status), message)
                        .with_code("policy_denied"),
                ));
            }
            RequestVerdict::Modify(m) => {
                if let Some(alias) = &m.model {
                    model = state.model(alias).ok_or_else(|| {
                        Failed(invalid(
                            script,
                            format!("`on_request` chose unknown model `{alias}`"),
                        ))
                    })?;
                    req.model = alias.clone();
                    ctx.model = Some(alias.clone());
                }
                if m.max_tokens.is_some() || m.temperature.is_some() || m.keep_last_turns.is_some()
                {
                    ctx.messages_body = None; // the client's own body no longer says it all
                }
                apply_overrides(req, m.max_tokens, m.temperature);
                if let Some(n) = m.keep_last_turns {
                    keep_last_turns(&mut req.messages, n);
                }
                ctx.tags.extend(m.tags);
                view = request_view(ctx, state, headers, req);
            }
        }
    }
    if !script.has_route {
        return Ok(Routed::plain(state, model, shared.health));
    }
    let context = context_view(state, model, shared);
    let Some(decision) = engine.route(script, &view, &context).map_err(Failed)? else {
        return Ok(Routed::plain(state, model, shared.health));
    };
    apply_decision(ctx, state, script, req, decision).map_err(Failed)
}

fn apply_decision(
    ctx: &mut RequestCtx,
    state: &LiveState,
    script: &Script,
    req: &mut ChatRequest,
    mut decision: RouteDecision,
) -> Result<Routed, PolicyError> {
    let cascade = match decision.cascade.take() {
        Some(json) => Some(Arc::new(decision_cascade(state, json).map_err(|m| {
            invalid(script, format!("`route` returned an invalid cascade: {m}"))
        })?)),
        None => None,
    };
    let mut targets: Vec<Target> = cascade
        .as_ref()
        .map(|c| c.all_targets())
        .unwrap_or_default();
    for name in decision.all_targets() {
        let resolved = state.resolve_target(name).ok_or_else(|| {
            invalid(script, format!("`route` chose unknown target `{name}` (not a model alias or a configured provider/model)"))
        })?;
        for t in resolved {
            if !targets
                .iter()
                .any(|x| x.provider == t.provider && x.model == t.model)
            {
                targets.push(t);
            }
        }
    }
    if decision.overrides.max_tokens.is_some() || decision.overrides.temperature.is_some() {
        ctx.messages_body = None; // the client's own body no longer says it all
    }
    apply_overrides(
        req,
        decision.overrides.max_tokens,
        decision.overrides.temperature,
    );
    ctx.tags.extend(decision.tags);
    Ok(Routed { targets, cascade })
}

/// A cascade a script returned, checked with the config's rules.
fn decision_cascade(state: &LiveState, json: serde_json::Value) -> Result<Cascade, String> {
    let plain = |name: &str| state.model(name).is_some_and(|m| m.cascade.is_none());
    let resolve = |name: &str| -> Result<Vec<Target>, String> {
        if state.model(name).is_some() && !plain(name) {
            return Err(format!("{name:?} is itself a cascade"));
        }
        state.resolve_target(name).ok_or_else(|| {
            format!("unknown target {name:?} (not a model alias or a configured provider/model)")
        })
    };
    let cx = tollgate_config::cascade::Context {
        resolve: &resolve,
        has_model: &plain,
        script_path: None,
    };
    tollgate_config::cascade::from_decision(json, &cx)
}

fn invalid(script: &Script, message: String) -> PolicyError {
    PolicyError {
        kind: PolicyErrorKind::InvalidDecision,
        file: script.path.to_string(),
        line: 0,
        col: 0,
        message,
    }
}

/// Applies a script's `max_tokens` and `temperature`, from `on_request` or a `route` decision.
/// `max_tokens` replaces whichever cap field the client used.
fn apply_overrides(req: &mut ChatRequest, max_tokens: Option<u32>, temperature: Option<f64>) {
    if let Some(n) = max_tokens {
        if req.max_completion_tokens.is_some() {
            req.max_completion_tokens = Some(n);
        } else {
            req.max_tokens = Some(n);
        }
    }
    if let Some(t) = temperature {
        req.extra.insert("temperature".into(), t.into());
    }
}

/// Keeps system and developer messages, and the last `n` others.
fn keep_last_turns(messages: &mut Vec<Message>, n: usize) {
    let is_system = |m: &Message| m.role == "system" || m.role == "developer";
    let others = messages.iter().filter(|m| !is_system(m)).count();
    let mut skip = others.saturating_sub(n);
    messages.retain(|m| {
        if is_system(m) || skip == 0 {
            true
        } else {
            skip -= 1;
            false
        }
    });
}

pub(crate) fn request_view(
    ctx: &RequestCtx,
    state: &LiveState,
    headers: &RequestHeader,
    req: &ChatRequest,
) -> RequestView {
    let header = |name: &str| {
        headers
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let identity = Identity {
        key: ctx.key_name.clone().unwrap_or_default(),
        tenant: ctx.tenant.clone().unwrap_or_default(),
        user: header("x-tollgate-user")
            .map(str::to_owned)
            .or_else(|| req.user.clone())
            .unwrap_or_default(),
        session: header("x-tollgate-session").unwrap_or_default().to_owned(),
    };
    let mut metadata = match req.extra.get("metadata") {
        Some(serde_json::Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    if let Some(serde_json::Value::Object(m)) = header("x-tollgate-metadata")
        .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
    {
        metadata.extend(m);
    }
    let allowed = &state.config.policy.header_allowlist;
    let visible = allowed
        .iter()
        .filter_map(|name| header(name).map(|v| (name.clone(), v.to_owned())))
        .collect();
    RequestView::new(req, identity, ctx.tags.clone(), metadata, visible)
}

/// What scripts see of the state outside the live config.
pub(crate) struct Shared<'a> {
    pub(crate) health: &'a HealthRegistry,
    /// The least room left in the request's budgets, in USD.
    pub(crate) budget_remaining: Option<f64>,
}

pub(crate) fn context_view(
    state: &LiveState,
    model: &ModelConfig,
    shared: &Shared<'_>,
) -> ContextView {
    let targets: Vec<String> = model.targets.iter().map(Target::id).collect();
    let health = targets
        .iter()
        .map(|t| (t.clone(), shared.health.snapshot(t)))
        .collect();
    ContextView(Arc::new(ContextData {
        targets,
        health,
        prices: state.prices.clone(),
        budget_remaining: shared.budget_remaining,
        ..ContextData::now()
    }))
}

/// Tags from the `x-tollgate-tags` header (comma-separated).
pub fn header_tags(headers: &RequestHeader) -> Vec<String> {
    headers
        .headers
        .get("x-tollgate-tags")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, text: &str) -> Message {
        Message {
            role: role.into(),
            content: text.into(),
            ..Message::default()
        }
    }

    #[test]
    fn keep_last_turns_keeps_system_messages() {
        let mut m = vec![
            msg("system", "s"),
            msg("user", "1"),
            msg("assistant", "2"),
            msg("user", "3"),
        ];
        keep_last_turns(&mut m, 1);
        let kept: Vec<String> = m.iter().map(Message::text).collect();
        assert_eq!(kept, vec!["s", "3"]);
    }
}
