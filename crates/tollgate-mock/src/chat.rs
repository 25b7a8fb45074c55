//! `POST /v1/chat/completions`: the answer rendered in OpenAI's format, as JSON or SSE, with
//! tool calls and logprobs.

use crate::answer::{self, Answer, Finish, Prompt};
use crate::http::{MockBody, error, json, malformed, sse};
use crate::stream::{self, Event, Pacing};
use crate::{MockConfig, faults::Faults, text};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

/// The OpenAI-only parts of the request.
struct Ask {
    model: String,
    stream: bool,
    include_usage: bool,
    logprobs: bool,
}

pub(crate) fn handle(body: &Bytes, config: &MockConfig, faults: &Faults) -> Response<MockBody> {
    let (ask, prompt) = match parse(body) {
        Ok(a) => a,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    if faults.malformed {
        return malformed(b"{\"id\":\"chatcmpl-broken\",\"choices\":[{");
    }
    let answer = Answer::new(prompt, faults);
    let id = format!("chatcmpl-mock{}", answer.hex());
    let usage = json!({
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": answer.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    });
    let finish = match answer.finish {
        Finish::Tool => "tool_calls",
        Finish::Length => "length",
        Finish::Stop => "stop",
    };
    if ask.stream {
        return stream(
            ask,
            &answer,
            id,
            finish,
            usage,
            &Pacing::new(config, faults),
        );
    }
    let message = match &answer.tool {
        Some(t) => json!({"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": format!("call_{}", answer.hex()), "type": "function",
                "function": {"name": t.name, "arguments": t.args_json}}]}),
        None => json!({"role": "assistant", "content": answer.text(), "refusal": null}),
    };
    let logprobs = if ask.logprobs && answer.tool.is_none() {
        logprobs_of(&answer.tokens, answer.confidence)
    } else {
        Value::Null
    };
    json(
        StatusCode::OK,
        &json!({
            "id": id, "object": "chat.completion", "created": stream::now(), "model": ask.model,
            "system_fingerprint": "fp_tollgate_mock",
            "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}],
            "usage": usage,
        }),
    )
}

fn parse(body: &[u8]) -> Result<(Ask, Prompt), String> {
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
        Some(Value::Array(parts)) => answer::join(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str)),
        ),
        _ => String::new(),
    };
    let prompt_tokens = answer::prompt_tokens(messages.iter().map(text_of));
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
    let ask = Ask {
        model,
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        logprobs: v.get("logprobs").and_then(Value::as_bool).unwrap_or(false),
    };
    let prompt = Prompt {
        seed_text,
        prompt_tokens,
        max_tokens,
        tool: required_tool(&v),
        json_schema: v
            .pointer("/response_format/json_schema/schema")
            .filter(|_| {
                v.pointer("/response_format/type").and_then(Value::as_str) == Some("json_schema")
            })
            .cloned(),
        model: ask.model.clone(),
        instructions: answer::join(
            messages
                .iter()
                .filter(|m| {
                    matches!(
                        m.get("role").and_then(Value::as_str),
                        Some("system" | "developer")
                    )
                })
                .filter_map(|m| m.get("content").and_then(Value::as_str)),
        ),
    };
    Ok((ask, prompt))
}

/// The tool to call when `tool_choice` is `required` or names a function.
fn required_tool(v: &Value) -> Option<answer::ToolCall> {
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
    let name = tool.pointer("/function/name")?.as_str()?;
    Some(answer::tool_call(
        name,
        tool.pointer("/function/parameters"),
    ))
}

/// Log-probabilities of `tokens`: saying the simulated model's confidence when it has one,
/// else stable per token.
fn logprobs_of(tokens: &[String], confidence: Option<f64>) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let lp = match confidence {
                Some(c) => crate::sim::logprob(c, t, i),
                None => -((text::seed(t) % 1000) as f64) / 1000.0,
            };
            json!({"token": t, "logprob": lp, "bytes": t.as_bytes(), "top_logprobs": []})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

fn stream(
    ask: Ask,
    answer: &Answer,
    id: String,
    finish: &'static str,
    usage: Value,
    pacing: &Pacing,
) -> Response<MockBody> {
    let created = stream::now();
    let call_id = format!("call_{}", answer.hex());
    let chunk = |delta: Value, finish: Option<&str>, logprobs: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": ask.model, "system_fingerprint": "fp_tollgate_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]});
        // OpenAI sends `"usage": null` on every chunk when usage was requested.
        if ask.include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events: Vec<Value> = Vec::with_capacity(pacing.chunks + 3);
    match &answer.tool {
        Some(t) => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                    "id": call_id, "type": "function",
                    "function": {"name": t.name, "arguments": ""}}]}),
                None,
                Value::Null,
            ));
            for piece in stream::split_str(&t.args_json, pacing.chunks) {
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
            for group in answer.groups(pacing.chunks) {
                let lp = if ask.logprobs {
                    logprobs_of(group, answer.confidence)
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
    // The role chunk and the first content chunk go out together; later ones wait.
    let events = events
        .iter()
        .enumerate()
        .map(|(i, ev)| Event::new(format!("data: {ev}\n\n"), i > 1))
        .collect();
    sse(stream::spawn(
        events,
        Some(Bytes::from_static(b"data: [DONE]\n\n")),
        pacing,
    ))
}
