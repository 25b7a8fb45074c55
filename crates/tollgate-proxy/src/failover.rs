//! Trying a request's targets: circuit breakers decide who may be tried, retryable failures
//! are retried on the same target (backoff with full jitter, or the provider's `retry-after`)
//! within its retry budget, and everything else moves on to the next target, all under the
//! request's deadline and until the first byte reaches the client.

use crate::context::RequestCtx;
use crate::forward::{Forwarded, deliver_json, forward_json, forward_stream, read_body};
use crate::health::{HealthRegistry, TargetStats, Verdict};
use crate::live::Provider;
use crate::llm::Payload;
use crate::metrics::{record_attempt, record_retry};
use crate::upstream::{AttemptError, open, retry_after};
use pingora::connectors::http::Connector;
use pingora::proxy::Session;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tollgate_config::{Resilience, Target};
use tollgate_providers::{Adapter, Disposition, UpstreamErrorKind, classify_status};
use tollgate_state::{Admission, Backoff, BackoffConfig, CircuitState};
use tollgate_types::{ApiError, ClientApi, ErrorKind};

/// What to try, how hard, and until when.
pub struct Plan {
    /// Targets in the order to try them.
    pub targets: Vec<Target>,
    /// Retries of the same target on a retryable failure.
    pub retries: u32,
    /// The request's total deadline.
    pub deadline: Instant,
}

/// A retry waits only if this much time would be left for the attempt itself.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

/// One attempt's target and its bookkeeping.
struct Attempt<'a> {
    stats: &'a TargetStats<'a>,
    /// Whether this attempt is the half-open circuit's probe.
    probe: bool,
    provider: &'a Arc<Provider>,
    target: &'a Target,
    limits: Limits,
}

/// Deadlines of one attempt.
struct Limits {
    /// Until the response header, and for a stream its first token too: one deadline for
    /// both, so a slow header leaves less time for the first token.
    first_byte_by: Instant,
    /// Whether another target remains after this one.
    has_next: bool,
    /// Whether the request's deadline, not the provider's timeout, set the limit: then a
    /// timeout is the request's, and says nothing about the target.
    capped: bool,
}

/// Tries the plan's targets (see [`try_targets`]), and once more with the reason when the
/// answer failed its JSON schema and the guardrail repairs it.
pub async fn try_answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    connector: &Connector,
    health: &HealthRegistry,
    payload: &mut Payload,
    plan: impl Fn() -> Plan,
) -> Result<(), ApiError> {
    try_targets(session, ctx, connector, health, payload, plan()).await?;
    if let Payload::Chat(req) = &mut *payload
        && crate::structured::take_repair(ctx, req).is_some()
    {
        return try_targets(session, ctx, connector, health, payload, plan()).await;
    }
    Ok(())
}

/// Tries the plan's targets until one answers (or the client is gone): `Err` is the error
/// that sums up their failures, with nothing sent to the client yet (a cascade then tries
/// its next tier).
pub async fn try_targets(
    session: &mut Session,
    ctx: &mut RequestCtx,
    connector: &Connector,
    health: &HealthRegistry,
    payload: &Payload,
    plan: Plan,
) -> Result<(), ApiError> {
    let state = ctx.state.clone();
    let r = &state.config.resilience;
    let mut failures: Vec<(String, String, AttemptError)> = Vec::new();
    let mut open_circuits = 0;
    let n = plan.targets.len();
    for (i, target) in plan.targets.iter().enumerate() {
        let Some(provider) = state.provider(&target.provider) else {
            continue; // validated at load; unreachable unless the config changes shape
        };
        let id = target.id();
        let stats = health.target(&id);
        let admission = stats.admit(r);
        if admission == Admission::Rejected {
            open_circuits += 1;
            tracing::debug!(request_id = %ctx.request_id, target_id = %id, "Circuit open; skipped.");
            continue;
        }
        let probe = admission == Admission::Probe;
        stats.count_request(r);
        let mut retries_left = plan.retries;
        let mut backoff = None;
        loop {
            let limits = limits(provider, payload, plan.deadline, i + 1 < n);
            let attempt = Attempt {
                stats: &stats,
                probe,
                provider,
                target,
                limits,
            };
            let outcome = attempt_and_record(session, ctx, connector, payload, attempt).await;
            let e = match outcome {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let wait = retry_wait(&e, r, &mut backoff);
            let time_left = plan.deadline.saturating_duration_since(Instant::now());
            // A failure may just have opened the circuit: then retrying would defeat it. A
            // probe is never retried: its one outcome decides the circuit.
            let retry = retries_left > 0
                && !probe
                && wait.is_some_and(|w| w + MIN_ATTEMPT_TIME < time_left)
                && stats.circuit_state(r) == CircuitState::Closed
                && stats.try_retry(r);
            tracing::warn!(request_id = %ctx.request_id, provider = %provider.config.name,
                model = %target.model, attempt = ctx.attempts, error = %e.summary(),
                action = if retry { "retry" } else { "next target" },
                "Upstream attempt failed.");
            failures.push((provider.config.name.clone(), target.model.clone(), e));
            match wait {
                Some(w) if retry => {
                    retries_left -= 1;
                    record_retry(&provider.config.name);
                    tokio::time::sleep(w).await;
                    // The circuit may have opened while this request waited.
                    if stats.circuit_state(r) != CircuitState::Closed {
                        break;
                    }
                }
                _ => break,
            }
        }
        if Instant::now() >= plan.deadline {
            break;
        }
    }
    Err(if failures.is_empty() && open_circuits > 0 {
        ApiError::new(
            ErrorKind::Unavailable,
            "every target of this model is unavailable: their circuits are open",
        )
        .with_code("circuit_open")
    } else {
        all_failed(&failures)
    })
}

fn limits(provider: &Provider, payload: &Payload, deadline: Instant, has_next: bool) -> Limits {
    let t = provider.config.timeouts;
    let timeout = if payload.is_stream() {
        t.ttft
    } else {
        t.first_byte
    };
    let first_byte_by = Instant::now()
        .checked_add(timeout)
        .map_or(deadline, |by| by.min(deadline));
    Limits {
        first_byte_by,
        has_next,
        capped: first_byte_by == deadline,
    }
}

/// How long to wait before retrying the same target, or `None` when a retry cannot help:
/// a 429 waits out its `retry-after` (up to the cap; longer means go elsewhere), 5xx and 529
/// back off with full jitter, and everything else moves on at once.
fn retry_wait(e: &AttemptError, r: &Resilience, backoff: &mut Option<Backoff>) -> Option<Duration> {
    match e {
        AttemptError::RateLimited(Some(wait)) => (*wait <= r.max_retry_wait).then_some(*wait),
        AttemptError::RateLimited(None) | AttemptError::Status(500 | 502 | 503 | 504 | 529) => {
            // Built on the first failure only: a healthy request never pays for it.
            let schedule = backoff.get_or_insert_with(|| {
                Backoff::new(BackoffConfig {
                    base: r.backoff_base,
                    max: r.backoff_max,
                })
            });
            Some(schedule.next_delay())
        }
        _ => None,
    }
}

/// One attempt, with its bookkeeping: attempt count, in-flight gauge, health and metrics.
/// `Ok` means the request is answered (or the client is gone); `Err` that nothing reached the
/// client yet.
async fn attempt_and_record(
    session: &mut Session,
    ctx: &mut RequestCtx,
    connector: &Connector,
    payload: &Payload,
    a: Attempt<'_>,
) -> Result<(), AttemptError> {
    let Attempt {
        stats,
        probe,
        provider,
        target,
        limits,
    } = a;
    let capped = limits.capped;
    let r = ctx.state.config.resilience;
    ctx.attempts += 1;
    let started = std::time::Instant::now();
    let in_flight = stats.start();
    let outcome = attempt(
        session,
        ctx,
        connector,
        provider,
        &target.model,
        payload,
        limits,
    )
    .await;
    drop(in_flight);
    // Time to first token of this attempt, not of the request (which includes earlier ones).
    let ttft = ctx
        .ttft
        .map(|t| t.saturating_sub(started.duration_since(ctx.started)));
    let (verdict, label, error) = match &outcome {
        // A client error forwarded as is says nothing about the target's health.
        Ok(Forwarded::Done) if ctx.status >= 400 => (Verdict::Neutral, "client_error", None),
        Ok(Forwarded::Done) => (Verdict::Healthy, "ok", None),
        Ok(Forwarded::ClientGone) => (Verdict::Neutral, "client_gone", None),
        Ok(Forwarded::Truncated) => (Verdict::Unhealthy, "broken", ctx.error.clone()),
        // The gateway's own decision (a guardrail, a budget): the provider did nothing wrong.
        Ok(Forwarded::Stopped) => (Verdict::Neutral, "stopped", None),
        Err(AttemptError::ContextLength(m)) => {
            (Verdict::Neutral, "context_length", Some(m.clone()))
        }
        // The gateway could not build the request (no such operation in this dialect): nothing
        // was sent, so the target is not to blame.
        Err(e @ AttemptError::Unbuildable(_)) => (Verdict::Neutral, e.outcome(), None),
        // The request's own deadline ran out, not the provider's timeout.
        Err(e @ AttemptError::Timeout(_)) if capped => (Verdict::Neutral, e.outcome(), None),
        Err(e) => (Verdict::Unhealthy, e.outcome(), Some(e.summary())),
    };
    stats.record(verdict, probe, error, started.elapsed(), ttft, &r);
    record_attempt(&provider.config.name, label);
    ctx.attempt_log.push(crate::context::AttemptRecord {
        provider: provider.config.name.clone(),
        model: target.model.clone(),
        outcome: label,
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    match outcome {
        Ok(Forwarded::ClientGone) => {
            session.set_keepalive(None);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            ctx.served_by = None;
            Err(e)
        }
    }
}

/// One attempt. `Err` means nothing has reached the client and the next target may be tried.
async fn attempt(
    session: &mut Session,
    ctx: &mut RequestCtx,
    connector: &Connector,
    provider: &Arc<Provider>,
    upstream_model: &str,
    payload: &Payload,
    limits: Limits,
) -> Result<Forwarded, AttemptError> {
    let mut req = payload
        .build(provider, upstream_model, ctx.messages_body.as_ref())
        .map_err(AttemptError::Unbuildable)?;
    if provider.adapter == Adapter::Anthropic && ctx.client_api == ClientApi::Anthropic {
        // Beta features a Messages client opts into (prompt-caching variants, long context...).
        if let Some(beta) = session
            .req_header()
            .headers
            .get("anthropic-beta")
            .and_then(|v| v.to_str().ok())
        {
            req.headers.push(("anthropic-beta".into(), beta.to_owned()));
        }
    }
    let header_wait = limits
        .first_byte_by
        .saturating_duration_since(Instant::now());
    let mut opened = open(connector, &provider.config, &req, header_wait).await?;
    let status = opened.header.status.as_u16();
    match classify_status(status) {
        Disposition::Failover if status == 429 => {
            return Err(AttemptError::RateLimited(retry_after(&opened.header)));
        }
        Disposition::Failover => return Err(AttemptError::Status(status)),
        Disposition::ClientError if limits.has_next => {
            // A prompt too long for this model may fit the next one: look before forwarding.
            let body = read_body(&mut opened, provider).await?;
            let e = provider.adapter.classify_error(status, &body);
            match e.kind {
                UpstreamErrorKind::ContextLength => {
                    return Err(AttemptError::ContextLength(e.message));
                }
                // A 400 that blames our credential or quota (Gemini's "API key not valid",
                // Anthropic's "credit balance is too low"): another provider may serve.
                UpstreamErrorKind::Authentication
                | UpstreamErrorKind::PermissionDenied
                | UpstreamErrorKind::RateLimited => return Err(AttemptError::Status(status)),
                _ => {}
            }
            ctx.served_by = Some((provider.config.name.clone(), upstream_model.to_owned()));
            return deliver_json(session, ctx, status, body, provider).await;
        }
        Disposition::Success | Disposition::ClientError => {}
    }
    ctx.served_by = Some((provider.config.name.clone(), upstream_model.to_owned()));
    let stream = payload.is_stream() && status < 300;
    let result = if stream {
        let include_usage = matches!(payload, Payload::Chat(r) if r.wants_stream_usage());
        forward_stream(
            session,
            ctx,
            &mut opened,
            provider,
            include_usage,
            limits.first_byte_by,
        )
        .await
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
