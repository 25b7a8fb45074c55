//! The Anthropic Messages API (`POST /v1/messages`), outbound: canonical requests become
//! Messages requests; Messages answers and event streams become canonical ones.

use crate::events::{ChatEvent, FinishReason};
use crate::request::{data_url, http_request, parse_arguments};
use crate::{AdapterError, UpstreamRequest};
use serde_json::{Map, Value, json};
use tollgate_config::ProviderConfig;
use tollgate_types::{ChatRequest, Message, Usage};

/// `max_tokens` is required by Anthropic; when the client sets none, the model's own output
/// limit is used, so the answer is never cut shorter than the model allows.
pub fn default_max_tokens(model: &str) -> u32 {
    const LIMITS: [(&str, u32); 8] = [
        ("opus-4-5", 64_000),
        ("opus-4", 32_000),
        ("sonnet-4", 64_000),
        ("haiku-4", 64_000),
        ("3-7-sonnet", 64_000),
        ("3-5-sonnet", 8_192),
        ("3-5-haiku", 8_192),
        ("claude-3-", 4_096),
    ];
    LIMITS
        .iter()
        .find(|(needle, _)| model.contains(needle))
        .map_or(4_096, |(_, n)| *n)
}

pub(crate) fn chat_request(
    p: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
) -> Result<UpstreamRequest, AdapterError> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    let max = req
        .output_cap()
        .unwrap_or_else(|| default_max_tokens(model));
    body.insert("max_tokens".into(), max.into());
    let (system, messages) = messages(&req.messages);
    if let Some(system) = system {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(messages));
    if req.is_stream() {
        body.insert("stream".into(), true.into());
    }
    let x = &req.extra;
    match x.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(t) = x.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0..=2, Anthropic's 0..=1.
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    // Fields both APIs share, and Anthropic-only ones a client may send through the OpenAI route.
    for key in ["top_p", "top_k", "thinking", "service_tier"] {
        if let Some(v) = x.get(key) {
            body.insert(key.into(), v.clone());
        }
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(tools) = x.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools.iter().filter_map(tool).collect();
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools));
        }
    }
    let parallel = x.get("parallel_tool_calls").and_then(Value::as_bool);
    if let Some(choice) = tool_choice(x.get("tool_choice"), parallel) {
        body.insert("tool_choice".into(), choice);
    }
    let body = serde_json::to_vec(&body).map_err(AdapterError::Encode)?;
    let mut up = http_request(
        p,
        format!("{}/messages", p.base_url.path),
        body,
        req.is_stream(),
    );
    up.headers
        .push(("anthropic-version".into(), p.api_version.clone()));
    Ok(up)
}

/// Hoists system messages and converts the rest, merging consecutive same-role messages so
/// roles alternate as Anthropic requires (tool results ride in user messages).
fn messages(input: &[Message]) -> (Option<Value>, Vec<Value>) {
    let mut system: Vec<Value> = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for m in input {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(content_blocks(&m.content));
                continue;
            }
            "assistant" => ("assistant", assistant_blocks(m)),
            "tool" | "function" => ("user", vec![tool_result(m)]),
            _ => ("user", content_blocks(&m.content)),
        };
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, existing)) if last == role => existing.extend(blocks),
            _ => out.push((role.to_owned(), blocks)),
        }
    }
    let system = match system.as_slice() {
        [] => None,
        // Plain text stays a string; blocks are kept when they carry `cache_control`.
        blocks if blocks.iter().all(|b| b.get("cache_control").is_none()) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            Some(Value::String(texts.join("\n\n")))
        }
        blocks => Some(Value::Array(blocks.to_vec())),
    };
    let messages = out
        .into_iter()
        .map(|(role, content)| match content.as_slice() {
            // One plain text block reads best as a string, as clients write it.
            [b] if b["type"] == "text" && b.get("cache_control").is_none() => {
                json!({"role": role, "content": b["text"]})
            }
            _ => json!({"role": role, "content": content}),
        })
        .collect();
    (system, messages)
}

/// OpenAI content (a string or parts) as Anthropic content blocks.
pub(crate) fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts.iter().filter_map(part_block).collect(),
        _ => Vec::new(),
    }
}

fn part_block(part: &Value) -> Option<Value> {
    let mut block = match part.get("type").and_then(Value::as_str)? {
        "text" => {
            let text = part.get("text").and_then(Value::as_str)?;
            if text.is_empty() {
                return None;
            }
            json!({"type": "text", "text": text})
        }
        "image_url" => {
            let url = part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))
                .and_then(Value::as_str)?;
            let source = match data_url(url) {
                Some((media_type, data)) => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                None => json!({"type": "url", "url": url}),
            };
            json!({"type": "image", "source": source})
        }
        // Anthropic-native blocks (document, image, ...) sent through the OpenAI route.
        _ => part.clone(),
    };
    if let (Some(cc), Some(obj)) = (part.get("cache_control"), block.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    Some(block)
}

fn assistant_blocks(m: &Message) -> Vec<Value> {
    let mut blocks = content_blocks(&m.content);
    let calls = m.extra.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or_default();
        blocks.push(json!({
            "type": "tool_use",
            "id": s("/id"),
            "name": s("/function/name"),
            "input": parse_arguments(s("/function/arguments")),
        }));
    }
    blocks
}

fn tool_result(m: &Message) -> Value {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str);
    let content = match &m.content {
        Value::String(s) => Value::String(s.clone()),
        other => Value::Array(content_blocks(other)),
    };
    json!({"type": "tool_result", "tool_use_id": id.unwrap_or_default(), "content": content})
}

fn tool(t: &Value) -> Option<Value> {
    let f = t.get("function")?;
    let mut out = Map::new();
    out.insert("name".into(), f.get("name")?.clone());
    if let Some(d) = f.get("description") {
        out.insert("description".into(), d.clone());
    }
    let schema = f
        .get("parameters")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    out.insert("input_schema".into(), schema);
    if let Some(cc) = t.get("cache_control") {
        out.insert("cache_control".into(), cc.clone());
    }
    Some(Value::Object(out))
}

fn tool_choice(choice: Option<&Value>, parallel: Option<bool>) -> Option<Value> {
    let mut out = match choice {
        Some(Value::String(s)) => match s.as_str() {
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => json!({"type": "auto"}),
        },
        Some(Value::Object(o)) => {
            let name = o.get("function").and_then(|f| f.get("name"))?;
            json!({"type": "tool", "name": name})
        }
        _ if parallel == Some(false) => json!({"type": "auto"}),
        _ => return None,
    };
    if let (Some(parallel), Some(obj)) = (parallel, out.as_object_mut())
        && obj.get("type").and_then(Value::as_str) != Some("none")
    {
        obj.insert("disable_parallel_tool_use".into(), (!parallel).into());
    }
    Some(out)
}

/// A Messages response as an OpenAI `chat.completion`, with its usage.
pub(crate) fn decode_response(body: &[u8]) -> Result<(Value, Option<Usage>), AdapterError> {
    let v: Value = serde_json::from_slice(body).map_err(AdapterError::Decode)?;
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or(AdapterError::Shape(
            "no `content` array in the Messages response",
        ))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("type") {
            "text" => text.push_str(s("text")),
            "thinking" => reasoning.push_str(s("thinking")),
            "tool_use" => calls.push(json!({
                "id": s("id"), "type": "function",
                "function": {"name": s("name"),
                    "arguments": b.get("input").map_or_else(|| "{}".to_owned(), Value::to_string)},
            })),
            _ => {}
        }
    }
    let finish = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or(FinishReason::Stop, FinishReason::from_anthropic);
    let usage = v.get("usage").map(Usage::from_anthropic);
    let message = crate::openai::assistant_message(text, reasoning, calls);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let out = crate::openai::completion(s("id"), s("model"), message, finish, usage);
    Ok((out, usage))
}

/// Decodes an Anthropic event stream into canonical events.
#[derive(Debug, Default)]
pub struct AnthropicStreamDecoder {
    /// Content block index → tool call index, for the blocks that are tool calls.
    tool_blocks: Vec<(u64, u32)>,
    tools: u32,
    usage: Map<String, Value>,
}

impl AnthropicStreamDecoder {
    /// Decodes one SSE event (its `data:` payload carries its own `type`).
    pub fn decode(&mut self, data: &str, out: &mut Vec<ChatEvent>) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        let s = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
        match v.get("type").and_then(Value::as_str).unwrap_or_default() {
            "message_start" => {
                out.push(ChatEvent::Start {
                    id: s(&v, "/message/id").unwrap_or_default(),
                    model: s(&v, "/message/model").unwrap_or_default(),
                });
                self.merge_usage(v.pointer("/message/usage"), out);
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => match s(block, "/text") {
                        Some(t) if !t.is_empty() => out.push(ChatEvent::Text(t)),
                        _ => {}
                    },
                    Some("tool_use") => {
                        let index = self.tools;
                        self.tools += 1;
                        let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        self.tool_blocks.push((block_index, index));
                        out.push(ChatEvent::ToolCall {
                            index,
                            id: s(block, "/id").unwrap_or_default(),
                            name: s(block, "/name").unwrap_or_default(),
                        });
                        // Streams start tool blocks with `input: {}`; anything else is content.
                        if let Some(input) = block.get("input")
                            && input.as_object().is_some_and(|o| !o.is_empty())
                        {
                            out.push(ChatEvent::ToolArgs {
                                index,
                                json: input.to_string(),
                            });
                        }
                    }
                    _ => {} // thinking, server tools: not representable in OpenAI chunks
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        if let Some(t) = s(delta, "/text").filter(|t| !t.is_empty()) {
                            out.push(ChatEvent::Text(t));
                        }
                    }
                    Some("input_json_delta") => {
                        let block_index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let tool = self.tool_blocks.iter().find(|(b, _)| *b == block_index);
                        if let (Some((_, index)), Some(json)) =
                            (tool, s(delta, "/partial_json").filter(|j| !j.is_empty()))
                        {
                            out.push(ChatEvent::ToolArgs {
                                index: *index,
                                json,
                            });
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = s(&v, "/delta/stop_reason") {
                    out.push(ChatEvent::Finish(FinishReason::from_anthropic(&reason)));
                }
                self.merge_usage(v.get("usage"), out);
            }
            "message_stop" => out.push(ChatEvent::Done),
            "error" => out.push(ChatEvent::Error {
                kind: s(&v, "/error/type").unwrap_or_else(|| "api_error".to_owned()),
                message: s(&v, "/error/message").unwrap_or_default(),
            }),
            _ => {} // ping, content_block_stop
        }
    }

    /// `message_delta` usage updates the counts `message_start` gave (output tokens always;
    /// input and cache counts when present), so the merged object is the final usage.
    fn merge_usage(&mut self, usage: Option<&Value>, out: &mut Vec<ChatEvent>) {
        let Some(Value::Object(u)) = usage else {
            return;
        };
        for (k, v) in u {
            if v.is_number() {
                self.usage.insert(k.clone(), v.clone());
            }
        }
        let merged = Value::Object(std::mem::take(&mut self.usage));
        out.push(ChatEvent::Usage(Usage::from_anthropic(&merged)));
        if let Value::Object(m) = merged {
            self.usage = m;
        }
    }
}

/// Reads an Anthropic error body: `(type, message)`.
pub(crate) fn decode_error(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((s("type")?, s("message").unwrap_or_default()))
}
