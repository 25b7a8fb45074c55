//! Forwarding an upstream answer to the client: whole JSON bodies, or SSE chunk by chunk.

use crate::context::RequestCtx;
use crate::guard::StreamStep;
use crate::live::Provider;
use crate::respond::{base_header, send_json};
use crate::upstream::{AttemptError, Opened, next_chunk};
use bytes::BytesMut;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::sync::Arc;
use tollgate_providers::{Adapter, StreamSignal, Transcoded};
use tollgate_types::{ApiError, ClientApi, ErrorKind};

/// Largest upstream JSON body the gateway buffers.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How forwarding ended, once something has reached the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// The whole answer was delivered.
    Done,
    /// The client went away; the upstream connection is dropped so generation stops.
    ClientGone,
    /// The upstream broke off mid-stream; the client got an in-stream error event.
    Truncated,
    /// The gateway stopped the stream (a guardrail, or the budget ran out) with an in-stream
    /// error event: nothing to hold against the provider.
    Stopped,
}

/// Headers naming who served the request.
pub(crate) fn served_headers(ctx: &RequestCtx) -> Vec<(&'static str, String)> {
    let mut h = Vec::with_capacity(3);
    if let Some((provider, model)) = &ctx.served_by {
        h.push(("x-tollgate-provider", provider.clone()));
        h.push(("x-tollgate-model", model.clone()));
    }
    // Known before the header only for complete answers: a stream's usage comes at its end
    // (its cost is in the request log and `tollgate_cost_usd_total`).
    if let Some(cost) = ctx.cost {
        h.push(("x-tollgate-cost-usd", cost.to_string()));
    }
    if let Some(cascade) = &ctx.cascade {
        h.push(("x-tollgate-cascade", cascade.header()));
    }
    h.extend(ctx.rate_headers.iter().cloned());
    h
}

/// Buffers a non-streamed answer, checks it, then sends it whole.
///
/// Buffering costs one body transfer on loopback-fast links and buys failover on a malformed
/// 200, plus usage for accounting before the client sees anything.
pub async fn forward_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    opened: &mut Opened,
    provider: &Arc<Provider>,
) -> Result<Forwarded, AttemptError> {
    let status = opened.header.status.as_u16();
    let body = read_body(opened, provider).await?;
    deliver_json(session, ctx, status, body, provider).await
}

/// Reads a whole response body, under the idle timeout per chunk and a size cap.
pub async fn read_body(
    opened: &mut Opened,
    provider: &Provider,
) -> Result<bytes::Bytes, AttemptError> {
    let idle = provider.config.timeouts.idle;
    let mut body = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut opened.session, idle).await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(AttemptError::Malformed(
                "response body too large".to_owned(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Checks and translates a complete answer (2xx), or shapes a client error, then sends it.
/// A cascade's earlier tier keeps the answer instead, for its scorers.
pub async fn deliver_json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: bytes::Bytes,
    provider: &Provider,
) -> Result<Forwarded, AttemptError> {
    if ctx.capturing {
        return crate::cascade::capture(ctx, status, body, provider);
    }
    if status < 300 {
        let translated = provider
            .adapter
            .translate_response(ctx.client_api, body)
            .map_err(|e| AttemptError::Malformed(e.to_string()))?;
        ctx.set_usage(translated.usage);
        return Ok(deliver_answer(session, ctx, translated.body, Shape::Json).await);
    }
    let body = client_error_body(ctx, provider, status, body);
    let headers = served_headers(ctx);
    match send_json(session, ctx, status, body, &headers).await {
        Ok(()) => Ok(Forwarded::Done),
        Err(_) => Ok(Forwarded::ClientGone),
    }
}

/// How a complete answer goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One JSON body.
    Json,
    /// Re-emitted as an OpenAI SSE stream (a cascade's buffered answer to a streaming
    /// client), with the usage chunk if the client asked for it.
    Sse {
        /// Whether the client asked for the usage chunk.
        include_usage: bool,
    },
}

/// Checks a complete answer in the client's dialect (plugins, guardrails, its JSON schema),
/// settles its budgets, and sends it, or the refusal.
pub async fn deliver_answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: bytes::Bytes,
    shape: Shape,
) -> Forwarded {
    // Plugins and guardrails first; then the schema check, on the text the client would
    // get (a plugin may have tidied it, a guardrail redacted it).
    let mut checked = match crate::plugins::check_answer(ctx, body).await {
        Ok(b) => crate::guard::check_answer(ctx, b),
        Err(e) => Err(e),
    };
    if let Ok(b) = &checked {
        match crate::structured::check_answer(ctx, b).await {
            crate::structured::Checked::Pass => {}
            // Nothing is sent or settled: the request asks again, and pays for both.
            crate::structured::Checked::Repair => return Forwarded::Done,
            crate::structured::Checked::Refuse(e) => checked = Err(e),
        }
    }
    if let Some(spend) = ctx.spend.clone() {
        spend.settle_budgets(ctx).await;
    }
    let (status, body) = match checked {
        Ok(body) => (200, body),
        Err(e) => {
            // The answer was generated (and is paid for); the client gets the refusal.
            ctx.error = Some(e.message.clone());
            (e.status(), e.body_for(ctx.client_api))
        }
    };
    let sent = match shape {
        Shape::Sse { include_usage } if status < 300 => {
            crate::cascade::reemit::send(session, ctx, &body, include_usage).await
        }
        _ => {
            let headers = served_headers(ctx);
            send_json(session, ctx, status, body, &headers)
                .await
                .is_ok()
        }
    };
    if sent {
        Forwarded::Done
    } else {
        Forwarded::ClientGone
    }
}

/// The body for a provider's client error (400, 413, 422): forwarded as it came when provider
/// and client both speak OpenAI and the body is OpenAI-shaped; otherwise the provider's message
/// in the client's error shape.
fn client_error_body(
    ctx: &mut RequestCtx,
    provider: &Provider,
    status: u16,
    body: bytes::Bytes,
) -> bytes::Bytes {
    let openai_shaped = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v.get("error").is_some_and(serde_json::Value::is_object))
    };
    // Same dialect on both sides, and a body in that dialect's error shape: as it came.
    let native = match (provider.adapter, ctx.client_api) {
        (Adapter::OpenAi(_), ClientApi::OpenAi) => openai_shaped(),
        (Adapter::Anthropic, ClientApi::Anthropic) => {
            serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("error"))
        }
        _ => false,
    };
    if native {
        return body;
    }
    let classified = provider.adapter.classify_error(status, &body);
    let message = if classified.message.is_empty() {
        format!("the provider rejected the request (HTTP {status})")
    } else {
        classified.message
    };
    ctx.error = Some(message.clone());
    ApiError::new(ErrorKind::UpstreamRejected(status), message).body_for(ctx.client_api)
}

/// Streams an SSE answer as it arrives. The first chunk is awaited before the client gets a
/// header, so an upstream that dies before saying anything can still fail over.
pub async fn forward_stream(
    session: &mut Session,
    ctx: &mut RequestCtx,
    opened: &mut Opened,
    provider: &Arc<Provider>,
    include_usage: bool,
    first_chunk_by: tokio::time::Instant,
) -> Result<Forwarded, AttemptError> {
    let timeouts = provider.config.timeouts;
    let content_type = opened.header.headers.get(http::header::CONTENT_TYPE);
    if !content_type.is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")) {
        let why = "a stream was asked for but the answer is not SSE";
        return Err(AttemptError::Malformed(why.to_owned()));
    }
    let mut transcoder = provider
        .adapter
        .stream_transcoder(ctx.client_api, include_usage);
    // Hold the client's header until the first token: an upstream that fails before it (an
    // error event, a reset, silence past the TTFT deadline) can still fail over.
    let mut held = BytesMut::new();
    loop {
        let wait = first_chunk_by.saturating_duration_since(tokio::time::Instant::now());
        let (out, ended) = match next_chunk(&mut opened.session, wait).await {
            Err(AttemptError::Timeout(_)) => {
                return Err(AttemptError::Timeout("time to first token"));
            }
            Err(e) => return Err(e),
            Ok(Some(chunk)) => (transcoder.push(&chunk), false),
            Ok(None) => (transcoder.finish(), true),
        };
        let mut started = false;
        for signal in &out.signals {
            match signal {
                StreamSignal::Error(e) => {
                    let why = format!("the stream opened with an error event ({e})");
                    return Err(AttemptError::Malformed(why));
                }
                StreamSignal::FirstToken | StreamSignal::Done => started = true,
                StreamSignal::Usage(_) | StreamSignal::Generated(_) => {}
            }
        }
        note_signals(ctx, out.signals);
        held.extend_from_slice(&out.bytes);
        if ended && !started {
            return Err(AttemptError::Broken(
                "stream ended before any token".to_owned(),
            ));
        }
        if started || ended {
            break;
        }
    }
    let header = stream_header(session, ctx)
        .map_err(|e| AttemptError::Malformed(e.etype().as_str().to_owned()))?;
    ctx.status = 200;
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return Ok(Forwarded::ClientGone);
    }
    let mut out = Transcoded {
        bytes: held.freeze(),
        signals: Vec::new(),
    };
    let mut truncated = false;
    let mut stopped = false;
    let mut ended = false;
    // Pieces a guardrail holds back until the text after them decides.
    let mut withheld = BytesMut::new();
    loop {
        truncated |= out
            .signals
            .iter()
            .any(|s| matches!(s, StreamSignal::Error(_)));
        // Plugins see each chunk's text first; what they let through (up to a stop) then
        // goes through the built-in guardrails.
        let mut plugin_stop = None;
        if ctx.plugin_stream.is_some() {
            let rewritten = crate::plugins::rewrite_stream(ctx, &out.bytes, ended).await;
            out.bytes = rewritten.bytes;
            plugin_stop = rewritten.stop;
        }
        match crate::guard::check_stream(ctx, &out.bytes, ended) {
            StreamStep::Send => {
                // What was held goes first: the text after it cleared it. Without held text
                // (every stream without answer guardrails) the piece goes as it is, uncopied.
                let piece = if withheld.is_empty() {
                    out
                } else {
                    withheld.extend_from_slice(&out.bytes);
                    Transcoded {
                        bytes: std::mem::take(&mut withheld).freeze(),
                        signals: out.signals,
                    }
                };
                if !write_transcoded(session, ctx, piece).await {
                    ctx.estimate_missing_usage();
                    return Ok(Forwarded::ClientGone);
                }
            }
            StreamStep::Hold => {
                note_signals(ctx, out.signals);
                withheld.extend_from_slice(&out.bytes);
            }
            StreamStep::Stop(refusal) => {
                // Neither this piece nor any held one is sent: what came before passed.
                note_signals(ctx, out.signals);
                stop_stream(session, ctx, &refusal).await;
                stopped = true;
                break;
            }
        }
        if let Some(refusal) = plugin_stop {
            stop_stream(session, ctx, &refusal).await;
            stopped = true;
            break;
        }
        if let Some(refusal) = crate::spend::over_budget(ctx).await {
            // Past what the request reserved, with no room left in its budget: stop here.
            stop_stream(session, ctx, &refusal).await;
            stopped = true;
            break;
        }
        if ended {
            break;
        }
        out = match next_chunk(&mut opened.session, timeouts.idle).await {
            Ok(Some(chunk)) => transcoder.push(&chunk),
            Ok(None) => {
                // The last piece goes round the loop once more, to be checked with the end
                // of the stream known.
                ended = true;
                transcoder.finish()
            }
            Err(e) => {
                // Too late to fail over: tell the client in-band, then close the stream.
                let kind = if matches!(e, AttemptError::Timeout(_)) {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::UpstreamFailed
                };
                let err = ApiError::new(kind, format!("upstream stream failed: {}", e.summary()))
                    .with_code("upstream_stream_error");
                ctx.error = Some(err.message.clone());
                let _ = session
                    .write_response_body(Some(err.sse_event_for(ctx.client_api)), false)
                    .await;
                truncated = true;
                break;
            }
        };
    }
    ctx.estimate_missing_usage();
    if session.write_response_body(None, true).await.is_err() {
        return Ok(Forwarded::ClientGone);
    }
    Ok(if stopped {
        Forwarded::Stopped
    } else if truncated {
        Forwarded::Truncated
    } else {
        Forwarded::Done
    })
}

/// Ends a stream the gateway stops (a guardrail, the budget) with an in-stream error event.
async fn stop_stream(session: &mut Session, ctx: &mut RequestCtx, refusal: &ApiError) {
    ctx.error = Some(refusal.message.clone());
    let _ = session
        .write_response_body(Some(refusal.sse_event_for(ctx.client_api)), false)
        .await;
}

/// Notes what a stream signals: first token time, usage, provider errors.
fn note_signals(ctx: &mut RequestCtx, signals: Vec<StreamSignal>) {
    for signal in signals {
        match signal {
            StreamSignal::FirstToken => ctx.ttft = Some(ctx.started.elapsed()),
            StreamSignal::Usage(u) => ctx.set_usage(Some(u)),
            StreamSignal::Error(e) => ctx.error = Some(format!("provider stream error: {e}")),
            StreamSignal::Generated(n) => ctx.generated_bytes += n as u64,
            StreamSignal::Done => {}
        }
    }
}

/// Notes what a transcoded chunk signals and writes its bytes. `false`: the client is gone.
async fn write_transcoded(session: &mut Session, ctx: &mut RequestCtx, out: Transcoded) -> bool {
    note_signals(ctx, out.signals);
    out.bytes.is_empty()
        || session
            .write_response_body(Some(out.bytes), false)
            .await
            .is_ok()
}

pub(crate) fn stream_header(
    session: &Session,
    ctx: &RequestCtx,
) -> pingora::Result<ResponseHeader> {
    let mut h = base_header(200, ctx)?;
    h.insert_header("content-type", "text/event-stream")?;
    h.insert_header("cache-control", "no-cache")?;
    for (k, v) in served_headers(ctx) {
        h.insert_header(k, v)?;
    }
    if !session.as_downstream().is_http2() {
        h.insert_header("transfer-encoding", "chunked")?;
    }
    Ok(h)
}
