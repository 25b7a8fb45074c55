//! The Anthropic Messages API (`POST /v1/messages`), outbound: canonical requests become
//! Messages requests; Messages answers and event streams become canonical ones.

use crate::call_id::plain;
use crate::completion::{Completion, ToolCall};
use crate::events::{ChatEvent, FinishReason};
use crate::request::{data_url, http_request, parse_arguments, stop_sequences};
use crate::{AdapterError, UpstreamRequest};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
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

/// The Messages body. Conversation text is borrowed from the canonical request, never copied:
/// only the JSON encoder touches it.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Content<'a>>,
    messages: Vec<Turn<'a>>,
    /// The small optional fields (`stream`, `stop_sequences`, `tools`, ...).
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Content<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Block<'a> {
    Known(Known<'a>),
    /// An Anthropic-native block (document, ...) sent through the OpenAI route, as it came.
    Raw(&'a Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Known<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    Image {
        source: Source<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a Value>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Content<'a>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

pub(crate) fn chat_request(
    p: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
) -> Result<UpstreamRequest, AdapterError> {
    let mut rest = Map::new();
    if req.is_stream() {
        rest.insert("stream".into(), true.into());
    }
    let x = &req.extra;
    if let Some(stop) = stop_sequences(x) {
        rest.insert("stop_sequences".into(), stop);
    }
    if let Some(t) = x.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0..=2, Anthropic's 0..=1.
        rest.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    // Fields both APIs share, and Anthropic-only ones a client may send through the OpenAI route.
    for key in ["top_p", "top_k", "thinking", "service_tier"] {
        if let Some(v) = x.get(key) {
            rest.insert(key.into(), v.clone());
        }
    }
    if let Some(user) = &req.user {
        rest.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(tools) = x.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools.iter().filter_map(tool).collect();
        if !tools.is_empty() {
            rest.insert("tools".into(), Value::Array(tools));
        }
    }
    let parallel = x.get("parallel_tool_calls").and_then(Value::as_bool);
    if let Some(choice) = tool_choice(x.get("tool_choice"), parallel) {
        rest.insert("tool_choice".into(), choice);
    }
    let (system, messages) = messages(&req.messages);
    let body = serde_json::to_vec(&Body {
        model,
        max_tokens: req
            .output_cap()
            .unwrap_or_else(|| default_max_tokens(model)),
        system,
        messages,
        rest,
    })
    .map_err(AdapterError::Encode)?;
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

/// A `/v1/messages` client's own body for an Anthropic provider, as it came but for `model`:
/// nothing is lost to translation (thinking blocks and their signatures, `cache_control` on any
/// block, `top_k`, server tools, ...). Only the top level is parsed; every value is copied as
/// raw JSON.
pub fn passthrough_request(
    p: &ProviderConfig,
    body: &[u8],
    model: &str,
    stream: bool,
) -> Result<UpstreamRequest, AdapterError> {
    let mut fields: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(AdapterError::Decode)?;
    let model_json = serde_json::value::to_raw_value(model).map_err(AdapterError::Encode)?;
    fields.insert("model".to_owned(), &model_json);
    let body = serde_json::to_vec(&fields).map_err(AdapterError::Encode)?;
    let mut up = http_request(p, format!("{}/messages", p.base_url.path), body, stream);
    up.headers
        .push(("anthropic-version".into(), p.api_version.clone()));
    Ok(up)
}

/// Hoists system messages and converts the rest, merging consecutive same-role messages so
/// roles alternate as Anthropic requires (tool results ride in user messages).
fn messages(input: &[Message]) -> (Option<Content<'_>>, Vec<Turn<'_>>) {
    let mut system: Vec<Block<'_>> = Vec::new();
    let mut out: Vec<(&'static str, Vec<Block<'_>>)> = Vec::new();
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
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => out.push((role, blocks)),
        }
    }
    let system = (!system.is_empty()).then(|| {
        // Plain text reads best as a string; blocks are kept when they carry `cache_control`.
        let texts: Option<Vec<&str>> = system
            .iter()
            .map(|b| match b {
                Block::Known(Known::Text {
                    text,
                    cache_control: None,
                }) => Some(*text),
                _ => None,
            })
            .collect();
        match texts {
            Some(t) if t.len() == 1 => Content::Text(Cow::Borrowed(t[0])),
            Some(t) => Content::Text(Cow::Owned(t.join("\n\n"))),
            None => Content::Blocks(system),
        }
    });
    let messages = out
        .into_iter()
        .map(|(role, blocks)| Turn {
            role,
            content: simplify(blocks),
        })
        .collect();
    (system, messages)
}

/// One plain text block reads best as a string, as clients write it.
fn simplify(mut blocks: Vec<Block<'_>>) -> Content<'_> {
    if let [
        Block::Known(Known::Text {
            text,
            cache_control: None,
        }),
    ] = blocks.as_slice()
    {
        return Content::Text(Cow::Borrowed(*text));
    }
    blocks.shrink_to_fit();
    Content::Blocks(blocks)
}

/// OpenAI content (a string or parts) as Anthropic content blocks.
fn content_blocks(content: &Value) -> Vec<Block<'_>> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![Block::Known(Known::Text {
            text: s,
            cache_control: None,
        })],
        Value::Array(parts) => parts.iter().filter_map(part_block).collect(),
        _ => Vec::new(),
    }
}

fn part_block(part: &Value) -> Option<Block<'_>> {
    let cache_control = part.get("cache_control");
    Some(match part.get("type").and_then(Value::as_str)? {
        "text" => {
            let text = part.get("text").and_then(Value::as_str)?;
            if text.is_empty() {
                return None;
            }
            Block::Known(Known::Text {
                text,
                cache_control,
            })
        }
        "image_url" => {
            let url = part
                .pointer("/image_url/url")
                .or_else(|| part.get("image_url"))
                .and_then(Value::as_str)?;
            let source = match data_url(url) {
                Some((media_type, data)) => Source::Base64 { media_type, data },
                None => Source::Url { url },
            };
            Block::Known(Known::Image {
                source,
                cache_control,
            })
        }
        _ => Block::Raw(part),
    })
}

fn assistant_blocks(m: &Message) -> Vec<Block<'_>> {
    let mut blocks = content_blocks(&m.content);
    let calls = m.extra.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or_default();
        blocks.push(Block::Known(Known::ToolUse {
            id: plain(s("/id")),
            name: s("/function/name"),
            input: parse_arguments(s("/function/arguments")),
        }));
    }
    blocks
}

fn tool_result(m: &Message) -> Block<'_> {
    let id = m.extra.get("tool_call_id").and_then(Value::as_str);
    let content = match &m.content {
        Value::String(s) => Content::Text(Cow::Borrowed(s)),
        other => Content::Blocks(content_blocks(other)),
    };
    Block::Known(Known::ToolResult {
        tool_use_id: plain(id.unwrap_or_default()),
        content,
    })
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

/// A Messages response, decoded into the canonical completion (borrowing its text).
pub(crate) fn decode_response(body: &[u8]) -> Result<Completion<'_>, AdapterError> {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(default, borrow)]
        id: Cow<'a, str>,
        #[serde(default, borrow)]
        model: Cow<'a, str>,
        #[serde(borrow)]
        content: Vec<Block<'a>>,
        #[serde(default, borrow)]
        stop_reason: Option<Cow<'a, str>>,
        #[serde(default)]
        usage: Option<Value>,
    }
    /// Every block type in one flat shape: cheaper than a tagged enum, which buffers.
    #[derive(Deserialize)]
    struct Block<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        /// Kept escaped: see `AnswerText`.
        #[serde(default, borrow)]
        text: Option<&'a RawValue>,
        #[serde(default, borrow)]
        thinking: Option<&'a RawValue>,
        #[serde(default, borrow)]
        id: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        name: Option<Cow<'a, str>>,
        #[serde(default)]
        input: Option<Value>,
    }
    let r: Response<'_> = serde_json::from_slice(body).map_err(AdapterError::Decode)?;
    let mut out = Completion {
        id: r.id,
        model: r.model,
        finish: Some(
            r.stop_reason
                .as_deref()
                .map_or(FinishReason::Stop, FinishReason::from_anthropic),
        ),
        usage: r.usage.as_ref().map(Usage::from_anthropic),
        ..Completion::default()
    };
    for b in r.content {
        match &*b.kind {
            "text" => {
                if let Some(t) = b.text {
                    out.text.push_escaped(t);
                }
            }
            "thinking" => {
                if let Some(t) = b.thinking {
                    out.reasoning.push_escaped(t);
                }
            }
            "tool_use" => out.tool_calls.push(ToolCall {
                id: b.id.unwrap_or_default(),
                name: b.name.unwrap_or_default(),
                arguments: Cow::Owned(b.input.map_or_else(|| "{}".to_owned(), |v| v.to_string())),
            }),
            _ => {}
        }
    }
    Ok(out)
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
                    Some("thinking") => match s(block, "/thinking") {
                        Some(t) if !t.is_empty() => out.push(ChatEvent::Reasoning(t)),
                        _ => {}
                    },
                    _ => {} // server tools: not representable in OpenAI chunks
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
                    Some("thinking_delta") => {
                        if let Some(t) = s(delta, "/thinking").filter(|t| !t.is_empty()) {
                            out.push(ChatEvent::Reasoning(t));
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
