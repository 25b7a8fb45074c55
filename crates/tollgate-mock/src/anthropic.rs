//! `POST /v1/messages`: the answer rendered in Anthropic's Messages format, as JSON or SSE.
//!
//! `x-api-key` and `anthropic-version` are accepted, not required.

use crate::answer::{self, Answer, Finish, Prompt, ToolCall};
use crate::http::{MockBody, json, malformed, sse};
use crate::stream::{self, Event, Pacing};
use crate::{MockConfig, faults::Faults};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

pub(crate) fn handle(body: &Bytes, config: &MockConfig, faults: &Faults) -> Response<MockBody> {
    let (model, streamed, prompt) = match parse(body) {
        Ok(a) => a,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    if faults.malformed {
        return malformed(b"{\"id\":\"msg_broken\",\"type\":\"message\",\"content\":[{");
    }
    let answer = Answer::new(prompt, faults);
    if streamed {
        return stream(&model, &answer, &Pacing::new(config, faults));
    }
    let content = match &answer.tool {
        Some(t) => tool_use(&answer, t, Value::Object(t.args.clone())),
        None => json!({"type": "text", "text": answer.text()}),
    };
    let mut message = message(&model, &answer, json!([content]), answer.completion_tokens);
    message["stop_reason"] = stop_reason(answer.finish).into();
    json(StatusCode::OK, &message)
}

/// An error body in Anthropic's shape, its `type` from the status.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn parse(body: &[u8]) -> Result<(String, bool, Prompt), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: Field required")?
        .to_owned();
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    let max_tokens = v
        .get("max_tokens")
        .ok_or("max_tokens: Field required")?
        .as_u64()
        .ok_or("max_tokens: Input should be a valid integer")?;
    let system = v.get("system").map(content_text);
    let texts = messages.iter().map(|m| {
        let (text, results) = turn_text(m);
        match (text.is_empty(), results.is_empty()) {
            (_, true) => text,
            (true, false) => results,
            (false, false) => format!("{text}\n{results}"),
        }
    });
    let prompt_tokens = answer::prompt_tokens(system.into_iter().chain(texts));
    let seed_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| {
            let (text, results) = turn_text(m);
            if text.is_empty() { results } else { text }
        })
        .unwrap_or_default();
    let prompt = Prompt {
        seed_text,
        prompt_tokens,
        max_tokens: Some(u32::try_from(max_tokens).unwrap_or(u32::MAX)),
        tool: forced_tool(&v),
        json_schema: None,
        model: model.clone(),
        instructions: String::new(),
    };
    let streamed = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok((model, streamed, prompt))
}

/// A turn's text blocks, and separately the text of its `tool_result` blocks.
fn turn_text(m: &Value) -> (String, String) {
    match m.get("content") {
        Some(Value::Array(blocks)) => {
            let of = |ty: &'static str| blocks.iter().filter(move |b| block_type(b) == Some(ty));
            let text = answer::join(of("text").filter_map(|b| b.get("text")?.as_str()));
            let results: Vec<String> = of("tool_result")
                .filter_map(|b| b.get("content"))
                .map(content_text)
                .collect();
            (text, results.join("\n"))
        }
        Some(c) => (content_text(c), String::new()),
        None => (String::new(), String::new()),
    }
}

/// The text of a string, or of the text blocks in an array (`system`, `tool_result` content).
fn content_text(c: &Value) -> String {
    match c {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => answer::join(
            blocks
                .iter()
                .filter(|b| block_type(b) == Some("text"))
                .filter_map(|b| b.get("text")?.as_str()),
        ),
        _ => String::new(),
    }
}

fn block_type(b: &Value) -> Option<&str> {
    b.get("type")?.as_str()
}

/// The tool `tool_choice` forces: the first for `any`, the named one for `tool`.
fn forced_tool(v: &Value) -> Option<ToolCall> {
    let tools = v.get("tools")?.as_array()?;
    let named = |t: &&Value| t.get("name").and_then(Value::as_str).is_some();
    let tool = match v.pointer("/tool_choice/type")?.as_str()? {
        "any" => tools.iter().find(named)?,
        "tool" => {
            let name = v.pointer("/tool_choice/name")?.as_str()?;
            tools
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?
        }
        _ => return None,
    };
    let name = tool.get("name")?.as_str()?;
    Some(answer::tool_call(name, tool.get("input_schema")))
}

fn stop_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::Tool => "tool_use",
    }
}

fn tool_use(answer: &Answer, t: &ToolCall, input: Value) -> Value {
    json!({"type": "tool_use", "id": format!("toolu_mock{}", answer.hex()), "name": t.name,
        "input": input})
}

/// The message object, `stop_reason` null; `input_tokens` excludes cache reads.
fn message(model: &str, answer: &Answer, content: Value, output_tokens: u64) -> Value {
    json!({"id": format!("msg_mock{}", answer.hex()), "type": "message", "role": "assistant",
        "model": model, "content": content, "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": answer.prompt_tokens - answer.cached_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": answer.cached_tokens,
            "output_tokens": output_tokens}})
}

fn stream(model: &str, answer: &Answer, pacing: &Pacing) -> Response<MockBody> {
    let ev = |name: &str, data: Value, delayed: bool| {
        Event::new(format!("event: {name}\ndata: {data}\n\n"), delayed)
    };
    let delta = |delta: Value, delayed: bool| {
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
            delayed,
        )
    };
    let start = message(model, answer, json!([]), 1);
    let block = match &answer.tool {
        Some(t) => tool_use(answer, t, json!({})),
        None => json!({"type": "text", "text": ""}),
    };
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": start}),
            false,
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
            false,
        ),
        ev("ping", json!({"type": "ping"}), false),
    ];
    // The first content delta follows the block start at once; later ones wait.
    match &answer.tool {
        Some(t) => {
            events.push(delta(
                json!({"type": "input_json_delta", "partial_json": ""}),
                false,
            ));
            for (i, piece) in stream::split_str(&t.args_json, pacing.chunks)
                .into_iter()
                .enumerate()
            {
                events.push(delta(
                    json!({"type": "input_json_delta", "partial_json": piece}),
                    i > 0,
                ));
            }
        }
        None => {
            for (i, group) in answer.groups(pacing.chunks).enumerate() {
                events.push(delta(
                    json!({"type": "text_delta", "text": group.concat()}),
                    i > 0,
                ));
            }
        }
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
        true,
    ));
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(answer.finish), "stop_sequence": null},
            "usage": {"output_tokens": answer.completion_tokens}}),
        false,
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"}), false));
    sse(stream::spawn(events, None, pacing))
}
