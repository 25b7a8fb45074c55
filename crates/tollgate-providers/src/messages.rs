//! The Anthropic Messages API, inbound: `POST /v1/messages` requests become canonical requests,
//! and canonical answers (JSON or events) are written back as Messages answers, so the official
//! `anthropic` SDK can call any configured model.

use crate::completion::message_id;
use crate::events::{ChatEvent, FinishReason};
use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tollgate_types::{ChatRequest, Message, StreamOptions, Usage};

/// The fields of a Messages request that map onto the canonical request.
#[derive(Deserialize)]
struct MessagesRequest {
    model: String,
    max_tokens: u32,
    messages: Vec<InMessage>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: Value,
}

/// Parses a Messages request into the canonical request. Streams always ask for usage: the
/// Messages stream reports it, and accounting needs it.
pub fn parse_messages_request(body: &[u8]) -> Result<ChatRequest, serde_json::Error> {
    let r: MessagesRequest = serde_json::from_slice(body)?;
    let mut messages = Vec::with_capacity(r.messages.len() + 1);
    if let Some(system) = r.system {
        let content = match system {
            Value::Array(blocks) => Value::Array(blocks.iter().filter_map(openai_part).collect()),
            other => other,
        };
        messages.push(message("system", content, Map::new()));
    }
    for m in r.messages {
        convert_message(m, &mut messages);
    }
    let mut extra = Map::new();
    if let Some(stop) = r.stop_sequences.filter(|s| !s.is_empty()) {
        extra.insert("stop".into(), json!(stop));
    }
    if let Some(t) = r.temperature {
        extra.insert("temperature".into(), json!(t));
    }
    if let Some(p) = r.top_p {
        extra.insert("top_p".into(), json!(p));
    }
    if let Some(tools) = r.tools {
        let tools: Vec<Value> = tools.iter().filter_map(openai_tool).collect();
        if !tools.is_empty() {
            extra.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = &r.tool_choice {
        let s = |k: &str| choice.get(k).and_then(Value::as_str);
        let mapped = match s("type") {
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => s("name").map(|n| json!({"type": "function", "function": {"name": n}})),
            Some("auto") => Some(json!("auto")),
            _ => None,
        };
        if let Some(m) = mapped {
            extra.insert("tool_choice".into(), m);
        }
        if let Some(disable) = choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
        {
            extra.insert("parallel_tool_calls".into(), (!disable).into());
        }
    }
    let stream = r.stream.unwrap_or(false);
    Ok(ChatRequest {
        model: r.model,
        messages,
        stream: stream.then_some(true),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        max_tokens: Some(r.max_tokens),
        max_completion_tokens: None,
        user: r
            .metadata
            .as_ref()
            .and_then(|m| m.get("user_id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        extra,
    })
}

fn message(role: &str, content: Value, extra: Map<String, Value>) -> Message {
    Message {
        role: role.to_owned(),
        content,
        extra,
    }
}

/// One Messages turn as canonical messages: tool results become `tool` messages (ahead of any
/// text in the same turn, as OpenAI requires), tool uses become `tool_calls`.
fn convert_message(m: InMessage, out: &mut Vec<Message>) {
    let blocks = match m.content {
        Value::Array(blocks) => blocks,
        other => {
            out.push(message(&m.role, other, Map::new()));
            return;
        }
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for b in &blocks {
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("type") {
            "tool_result" => {
                let content = match b.get("content") {
                    // Content parts: OpenAI tool messages take text parts too.
                    Some(Value::Array(inner)) => {
                        Value::Array(inner.iter().filter_map(openai_part).collect())
                    }
                    Some(v) => v.clone(),
                    None => Value::String(String::new()),
                };
                let mut extra = Map::new();
                extra.insert("tool_call_id".into(), s("tool_use_id").into());
                out.push(message("tool", content, extra));
            }
            "tool_use" => calls.push(json!({
                "id": s("id"), "type": "function",
                "function": {"name": s("name"),
                    "arguments": b.get("input").map_or_else(|| "{}".to_owned(), Value::to_string)},
            })),
            "thinking" | "redacted_thinking" => {}
            _ => parts.extend(openai_part(b)),
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return;
    }
    let mut extra = Map::new();
    if !calls.is_empty() {
        extra.insert("tool_calls".into(), Value::Array(calls));
    }
    let content = if parts.is_empty() {
        Value::Null
    } else {
        Value::Array(parts)
    };
    out.push(message(&m.role, content, extra));
}

/// An Anthropic content block as an OpenAI content part.
fn openai_part(b: &Value) -> Option<Value> {
    let mut part = match b.get("type").and_then(Value::as_str)? {
        "text" => json!({"type": "text", "text": b.get("text")?}),
        "image" => {
            let src = b.get("source")?;
            let s = |k: &str| src.get(k).and_then(Value::as_str);
            let url = match s("type")? {
                "base64" => format!("data:{};base64,{}", s("media_type")?, s("data")?),
                "url" => s("url")?.to_owned(),
                _ => return None,
            };
            json!({"type": "image_url", "image_url": {"url": url}})
        }
        _ => b.clone(), // documents and the like, for Anthropic upstreams
    };
    if let (Some(cc), Some(obj)) = (b.get("cache_control"), part.as_object_mut()) {
        obj.insert("cache_control".into(), cc.clone());
    }
    Some(part)
}

fn openai_tool(t: &Value) -> Option<Value> {
    let name = t.get("name")?;
    // Server tools (`web_search_...`) carry a versioned `type` and no schema.
    let schema = t.get("input_schema")?;
    let mut f = json!({"name": name, "parameters": schema});
    if let Some(d) = t.get("description") {
        f["description"] = d.clone();
    }
    Some(json!({"type": "function", "function": f}))
}

/// Encodes canonical events as a Messages event stream.
#[derive(Debug, Default)]
pub struct AnthropicStreamEncoder {
    id: String,
    model: String,
    announced: bool,
    /// The open content block: its index and whether it is text.
    open: Option<(u32, bool)>,
    blocks: u32,
    /// Tool call index → content block index.
    tool_blocks: Vec<(u32, u32)>,
    finish: Option<FinishReason>,
    usage: Usage,
    done: bool,
}

impl AnthropicStreamEncoder {
    /// Appends the SSE bytes for `event` to `out`.
    pub fn encode(&mut self, event: &ChatEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            ChatEvent::Start { id, model } => {
                self.id = message_id(id).into_owned();
                self.model.clone_from(model);
            }
            // Usage before any content is the prompt's: it goes into `message_start`.
            ChatEvent::Usage(u) => self.usage = *u,
            // Thinking blocks need a signature this gateway cannot make: not re-emitted.
            ChatEvent::Reasoning(_) => {}
            ChatEvent::Finish(r) => self.finish = Some(*r),
            ChatEvent::Text(t) => {
                self.announce(out);
                let index = match self.open {
                    Some((i, true)) => i,
                    _ => self.open_block(json!({"type": "text", "text": ""}), true, out),
                };
                write_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": t}}),
                    out,
                );
            }
            ChatEvent::ToolCall { index, id, name } => {
                self.announce(out);
                let block = self.open_block(
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    false,
                    out,
                );
                self.tool_blocks.push((*index, block));
            }
            ChatEvent::ToolArgs { index, json } => {
                let Some(&(_, block)) = self.tool_blocks.iter().find(|(t, _)| t == index) else {
                    return;
                };
                write_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": block,
                        "delta": {"type": "input_json_delta", "partial_json": json}}),
                    out,
                );
            }
            ChatEvent::Error { kind, message } => {
                write_event(
                    "error",
                    &json!({"type": "error", "error": {"type": kind, "message": message}}),
                    out,
                );
            }
            ChatEvent::Done => {
                self.announce(out);
                self.close_block(out);
                let reason = self.finish.unwrap_or(FinishReason::Stop);
                write_event(
                    "message_delta",
                    &json!({"type": "message_delta",
                        "delta": {"stop_reason": reason.anthropic(), "stop_sequence": null},
                        "usage": self.usage.to_anthropic()}),
                    out,
                );
                write_event("message_stop", &json!({"type": "message_stop"}), out);
                self.done = true;
            }
        }
    }

    fn announce(&mut self, out: &mut BytesMut) {
        if self.announced {
            return;
        }
        self.announced = true;
        let mut usage = self.usage.to_anthropic();
        usage["output_tokens"] = json!(self.usage.output_tokens.min(1));
        write_event(
            "message_start",
            &json!({"type": "message_start", "message": {"id": self.id, "type": "message",
                "role": "assistant", "model": self.model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": usage}}),
            out,
        );
    }

    fn open_block(&mut self, block: Value, text: bool, out: &mut BytesMut) -> u32 {
        self.close_block(out);
        let index = self.blocks;
        self.blocks += 1;
        write_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
            out,
        );
        self.open = Some((index, text));
        index
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if let Some((index, _)) = self.open.take() {
            write_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
                out,
            );
        }
    }
}

fn write_event(name: &str, data: &Value, out: &mut BytesMut) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    // Writing into a BytesMut cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), data);
    out.put_slice(b"\n\n");
}
