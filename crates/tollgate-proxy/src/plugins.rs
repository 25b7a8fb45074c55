//! Wasm plugins in the request path: `on-request` before guardrails and routing, `route`
//! after the routing script, `on-response` on a complete answer and `on-chunk` on each
//! streamed chunk with text, before the built-in guardrails see it.

use crate::context::RequestCtx;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_plugins::types::{HookSet, Response, StreamState, Target as PluginTarget};
use tollgate_plugins::{ChunkOutcome, Plugins, Refusal, RequestInfo};
use tollgate_types::{ApiError, ChatRequest, ClientApi, ErrorKind};

/// Hooks that need the plugins' view of the request kept for later.
fn later_hooks() -> HookSet {
    HookSet::ON_RESPONSE | HookSet::ON_CHUNK | HookSet::ROUTE | HookSet::SCORE
}

/// How much already-sent text `on-chunk` sees, to catch a match split across chunks.
const STREAM_TAIL_BYTES: usize = 256;

/// The client's error for a plugin's refusal, or for a `fail_closed` plugin that failed.
fn refusal(ctx: &RequestCtx, r: &Refusal, stage: &'static str) -> ApiError {
    let action = if r.failed { "failed_closed" } else { stage };
    metrics::counter!("tollgate_plugin_actions_total", "plugin" => r.plugin.clone(), "action" => action)
        .increment(1);
    tracing::info!(request_id = %ctx.request_id, plugin = %r.plugin, stage, failed = r.failed,
        "A plugin refused.");
    if r.failed {
        ApiError::new(ErrorKind::Unavailable, r.message.clone()).with_code("plugin_failed")
    } else {
        ApiError::new(
            ErrorKind::PolicyDenied(r.status),
            format!("refused by plugin {}: {}", r.plugin, r.message),
        )
        .with_code("plugin_denied")
    }
}

/// Runs `on-request`: the request is allowed, changed in place, or refused. Keeps the
/// plugins' view of the request for the later hooks. Returns whether a plugin chose another
/// model alias.
pub async fn on_request(
    ctx: &mut RequestCtx,
    headers: &pingora::http::RequestHeader,
    req: &mut ChatRequest,
) -> Result<bool, ApiError> {
    let state = ctx.state.clone();
    let Some(model) = ctx.model.clone() else {
        return Ok(false);
    };
    let plugins = &state.plugins;
    let calls_now = plugins.any(&model, HookSet::ON_REQUEST);
    if !calls_now && !plugins.any(&model, later_hooks()) {
        return Ok(false);
    }
    let info = RequestInfo {
        id: ctx.request_id.clone(),
        key: ctx.key_name.clone(),
        team: ctx.team.clone(),
        tenant: ctx.tenant.clone(),
        user: ctx.user.clone(),
        tags: ctx.tags.clone(),
        headers: headers
            .headers
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("x-tollgate-"))
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    };
    let mut view = Plugins::request_view(&info, req);
    let mut model_changed = false;
    if calls_now {
        let changes = plugins
            .on_request(&mut view, req)
            .await
            .map_err(|r| refusal(ctx, &r, "deny_request"))?;
        if changes.body_changed || changes.model_changed {
            // The client's own `/v1/messages` body no longer says what is sent.
            ctx.messages_body = None;
        }
        if !changes.modified_by.is_empty() {
            for p in &changes.modified_by {
                metrics::counter!("tollgate_plugin_actions_total", "plugin" => p.clone(), "action" => "modify_request")
                    .increment(1);
            }
        }
        ctx.tags.extend(changes.tags);
        model_changed = changes.model_changed;
    }
    if req.is_stream() && plugins.any(&view.model, HookSet::ON_CHUNK) {
        ctx.plugin_stream = Some(PluginStream::default());
    }
    ctx.plugin_view = Some(std::sync::Arc::new(view));
    Ok(model_changed)
}

/// Runs `route`: plugins may reorder or drop the routing script's targets.
pub async fn route(
    ctx: &mut RequestCtx,
    targets: Vec<tollgate_config::Target>,
) -> Result<Vec<tollgate_config::Target>, ApiError> {
    let state = ctx.state.clone();
    let Some(view) = ctx.plugin_view.clone() else {
        return Ok(targets);
    };
    if !state.plugins.any(&view.model, HookSet::ROUTE) {
        return Ok(targets);
    }
    let candidates: Vec<PluginTarget> = targets
        .iter()
        .map(|t| PluginTarget {
            provider: t.provider.clone(),
            model: t.model.clone(),
        })
        .collect();
    let chosen = state
        .plugins
        .route(&view, candidates)
        .await
        .map_err(|r| refusal(ctx, &r, "deny_route"))?;
    Ok(chosen
        .iter()
        .filter_map(|c| {
            targets
                .iter()
                .find(|t| t.provider == c.provider && t.model == c.model)
                .cloned()
        })
        .collect())
}

/// Runs `on-response` on a complete answer (the client's JSON body): the body as it is,
/// with its text replaced, or a refusal.
pub async fn check_answer(ctx: &mut RequestCtx, body: Bytes) -> Result<Bytes, ApiError> {
    let state = ctx.state.clone();
    let Some(view) = ctx.plugin_view.clone() else {
        return Ok(body);
    };
    if !state.plugins.any(&view.model, HookSet::ON_RESPONSE) {
        return Ok(body);
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    let (provider, model) = ctx.served_by.clone().unwrap_or_default();
    let usage = ctx.usage.unwrap_or_default();
    let finish_reason = json["choices"][0]["finish_reason"]
        .as_str()
        .or_else(|| json["stop_reason"].as_str())
        .map(str::to_owned);
    let mut changed = false;
    for text in crate::guard::answer_texts(ctx.client_api, &mut json) {
        let mut resp = Response {
            provider: provider.clone(),
            model: model.clone(),
            text: std::mem::take(text),
            finish_reason: finish_reason.clone(),
            prompt_tokens: u32::try_from(usage.input_tokens).unwrap_or(u32::MAX),
            completion_tokens: u32::try_from(usage.output_tokens).unwrap_or(u32::MAX),
        };
        let replaced_by = state.plugins.on_response(&view, &mut resp).await;
        *text = resp.text;
        match replaced_by {
            Ok(by) => {
                for p in &by {
                    metrics::counter!("tollgate_plugin_actions_total", "plugin" => p.clone(), "action" => "replace_response")
                        .increment(1);
                }
                changed |= !by.is_empty();
            }
            Err(r) => return Err(refusal(ctx, &r, "deny_response")),
        }
    }
    if !changed {
        return Ok(body);
    }
    Ok(Bytes::from(json.to_string()))
}

/// A stream's `on-chunk` state: the partial SSE line not yet complete, the chunk count and
/// the tail of text already sent.
#[derive(Debug, Default)]
pub struct PluginStream {
    partial: Vec<u8>,
    index: u32,
    tail: String,
}

impl PluginStream {
    fn remember(&mut self, text: &str) {
        self.tail.push_str(text);
        if self.tail.len() > STREAM_TAIL_BYTES {
            let cut = self
                .tail
                .ceil_char_boundary(self.tail.len() - STREAM_TAIL_BYTES);
            self.tail.drain(..cut);
        }
    }
}

/// The texts an SSE event's JSON carries, in the client's format.
fn event_texts(api: ClientApi, v: &mut Value) -> Vec<&mut String> {
    match api {
        ClientApi::OpenAi => match v.get_mut("choices") {
            Some(Value::Array(choices)) => choices
                .iter_mut()
                .filter_map(|c| match c.get_mut("delta")?.get_mut("content")? {
                    Value::String(s) if !s.is_empty() => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        ClientApi::Anthropic => match v.get_mut("delta").and_then(|d| d.get_mut("text")) {
            Some(Value::String(s)) if !s.is_empty() => vec![s],
            _ => Vec::new(),
        },
    }
}

/// A piece of a stream after `on-chunk`.
pub struct Rewritten {
    /// What to send: complete lines, rewritten where a plugin replaced a chunk's text, up to
    /// (not including) a line a plugin stopped at.
    pub bytes: Bytes,
    /// Stop the stream after sending `bytes`, with this error.
    pub stop: Option<ApiError>,
}

/// Runs `on-chunk` over the complete SSE lines in `bytes` (all of them once the stream
/// `ended`); a partial last line waits for the rest.
pub async fn rewrite_stream(ctx: &mut RequestCtx, bytes: &[u8], ended: bool) -> Rewritten {
    let (Some(mut stream), Some(view)) = (ctx.plugin_stream.take(), ctx.plugin_view.clone()) else {
        return Rewritten {
            bytes: Bytes::copy_from_slice(bytes),
            stop: None,
        };
    };
    let state = ctx.state.clone();
    stream.partial.extend_from_slice(bytes);
    let complete: Vec<u8> = if ended {
        std::mem::take(&mut stream.partial)
    } else {
        match stream.partial.iter().rposition(|b| *b == b'\n') {
            Some(last) => stream.partial.drain(..=last).collect(),
            None => Vec::new(),
        }
    };
    let mut out = BytesMut::with_capacity(complete.len());
    for line in complete.split_inclusive(|b| *b == b'\n') {
        let parsed = line
            .strip_prefix(b"data:")
            .and_then(|d| serde_json::from_slice::<Value>(d.trim_ascii()).ok());
        let Some(mut event) = parsed else {
            out.extend_from_slice(line);
            continue;
        };
        let mut changed = false;
        for text in event_texts(ctx.client_api, &mut event) {
            let chunk_state = StreamState {
                index: stream.index,
                tail: stream.tail.clone(),
            };
            stream.index += 1;
            match state.plugins.on_chunk(&view, text, &chunk_state).await {
                ChunkOutcome::Pass => {}
                ChunkOutcome::Replace(t) => {
                    *text = t;
                    changed = true;
                }
                ChunkOutcome::Stop(r) => {
                    // The stream ends here: its plugin state is not put back.
                    return Rewritten {
                        bytes: out.freeze(),
                        stop: Some(refusal(ctx, &r, "stop_stream")),
                    };
                }
            }
            stream.remember(text);
        }
        if changed {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(event.to_string().as_bytes());
            out.extend_from_slice(if line.ends_with(b"\n") { b"\n" } else { b"" });
        } else {
            out.extend_from_slice(line);
        }
    }
    ctx.plugin_stream = Some(stream);
    Rewritten {
        bytes: out.freeze(),
        stop: None,
    }
}
