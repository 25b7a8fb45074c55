//! `POST /v1/chat/completions`: JSON and SSE answers, tool calls, logprobs.

use crate::http::{MockBody, error, full, json, sse};
use crate::{MockConfig, faults::Faults, text};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// What the request asks for, read once.
struct Ask {
    model: String,
    seed_text: String,
    prompt_tokens: u64,
    max_tokens: Option<u32>,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
    tool: Option<(String, String)>,
}

pub(crate) fn handle(body: &Bytes, config: &MockConfig, faults: &Faults) -> Response<MockBody> {
    let ask = match parse(body) {
        Ok(a) => a,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    if faults.malformed {
        return full_with_type(Bytes::from_static(
            b"{\"id\":\"chatcmpl-broken\",\"choices\":[{",
        ));
    }
    let (tokens, truncated) = text::answer_tokens(&ask.seed_text, ask.max_tokens);
    let id = format!("chatcmpl-mock{:016x}", text::seed(&ask.seed_text));
    let completion_tokens = match &ask.tool {
        Some((_, args)) => text::estimate_tokens(args) + 5,
        None => tokens.len() as u64,
    };
    let usage = json!({
        "prompt_tokens": ask.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": ask.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    });
    let finish = if ask.tool.is_some() {
        "tool_calls"
    } else if truncated {
        "length"
    } else {
        "stop"
    };
    if ask.stream {
        return stream(ask, tokens, id, finish, usage, config, faults);
    }
    let message = match &ask.tool {
        Some((name, args)) => json!({"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": format!("call_{}", &id[13..]), "type": "function",
                "function": {"name": name, "arguments": args}}]}),
        None => json!({"role": "assistant", "content": tokens.concat(), "refusal": null}),
    };
    let logprobs = if ask.logprobs && ask.tool.is_none() {
        logprobs_of(&tokens)
    } else {
        Value::Null
    };
    json(
        StatusCode::OK,
        &json!({
            "id": id, "object": "chat.completion", "created": now(), "model": ask.model,
            "system_fingerprint": "fp_tollgate_mock",
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}],
            "usage": usage,
        }),
    )
}

fn full_with_type(b: Bytes) -> Response<MockBody> {
    let mut r = Response::new(full(b));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn parse(body: &[u8]) -> Result<Ask, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .ok_or("missing `model`")?
        .to_owned();
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("missing `messages`")?;
    let text_of = |m: &Value| match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    // Chat templates add a few tokens per message; OpenAI documents 3.
    let prompt_tokens = messages
        .iter()
        .map(|m| text::estimate_tokens(&text_of(m)) + 3)
        .sum::<u64>()
        + 3;
    let seed_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(text_of)
        .unwrap_or_default();
    let max_tokens = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Ask {
        model,
        seed_text,
        prompt_tokens,
        max_tokens,
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        logprobs: v.get("logprobs").and_then(Value::as_bool).unwrap_or(false),
        tool: required_tool(&v),
    })
}

/// The tool to call when `tool_choice` is `required` or names a function: (name, JSON arguments).
fn required_tool(v: &Value) -> Option<(String, String)> {
    let tools = v.get("tools")?.as_array()?;
    let choice = v.get("tool_choice")?;
    let tool = match choice {
        Value::String(s) if s == "required" => tools.first()?,
        Value::Object(_) => {
            let name = choice.pointer("/function/name")?.as_str()?;
            tools
                .iter()
                .find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))?
        }
        _ => return None,
    };
    let name = tool.pointer("/function/name")?.as_str()?.to_owned();
    let params = tool.pointer("/function/parameters");
    let mut args = serde_json::Map::new();
    let required = params
        .and_then(|p| p.get("required"))
        .and_then(Value::as_array);
    for key in required.into_iter().flatten().filter_map(Value::as_str) {
        let ty = params
            .and_then(|p| p.pointer(&format!("/properties/{key}/type")))
            .and_then(Value::as_str);
        let val = match ty {
            Some("integer" | "number") => json!(1),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => json!("mock"),
        };
        args.insert(key.to_owned(), val);
    }
    Some((name, Value::Object(args).to_string()))
}

fn logprobs_of(tokens: &[String]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let lp = -((text::seed(t) % 1000) as f64) / 1000.0;
            json!({"token": t, "logprob": lp, "bytes": t.as_bytes(), "top_logprobs": []})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stream(
    ask: Ask,
    tokens: Vec<String>,
    id: String,
    finish: &'static str,
    usage: Value,
    config: &MockConfig,
    faults: &Faults,
) -> Response<MockBody> {
    let ttft = faults.ttft.unwrap_or(config.ttft);
    let delay = faults.chunk_delay.unwrap_or(config.chunk_delay);
    let n_chunks = faults.chunks.unwrap_or(config.chunks).max(1) as usize;
    let reset_after = faults.reset_after;
    let created = now();
    let usage_field = if ask.include_usage {
        Value::Null
    } else {
        Value::Bool(false)
    };
    let call_id = format!("call_{}", &id[13..]);
    let model = ask.model.clone();
    let chunk_id = id.clone();
    let chunk = move |delta: Value, finish: Option<&str>, logprobs: Value| {
        let mut c = json!({"id": chunk_id, "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": "fp_tollgate_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]});
        // OpenAI sends `"usage": null` on every chunk when usage was requested.
        if usage_field.is_null() {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events: Vec<Value> = Vec::with_capacity(n_chunks + 3);
    match &ask.tool {
        Some((name, args)) => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": call_id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
                Value::Null,
            ));
            for piece in split_str(args, n_chunks) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                    Value::Null,
                ));
            }
        }
        None => {
            events.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
                Value::Null,
            ));
            let per = tokens.len().div_ceil(n_chunks).max(1);
            for group in tokens.chunks(per) {
                let lp = if ask.logprobs {
                    logprobs_of(group)
                } else {
                    Value::Null
                };
                events.push(chunk(json!({"content": group.concat()}), None, lp));
            }
        }
    }
    events.push(chunk(json!({}), Some(finish), Value::Null));
    if ask.include_usage {
        events.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": ask.model, "system_fingerprint": "fp_tollgate_mock",
            "choices": [], "usage": usage}),
        );
    }
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        sleep(ttft).await;
        for (i, ev) in events.iter().enumerate() {
            if reset_after.is_some_and(|n| i as u32 >= n) {
                let _ = tx
                    .send(Err(std::io::Error::other("mock: injected reset")))
                    .await;
                return;
            }
            if i > 1 {
                sleep(delay).await;
            }
            if tx
                .send(Ok(Bytes::from(format!("data: {ev}\n\n"))))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    sse(rx)
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn split_str(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let per = chars.len().div_ceil(n).max(1);
    chars.chunks(per).map(|c| c.iter().collect()).collect()
}
