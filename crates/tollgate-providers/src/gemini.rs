//! Google's Gemini API (`models/{model}:generateContent` and `:streamGenerateContent?alt=sse`),
//! outbound: canonical requests become `contents`/`parts`; answers and streams come back
//! canonical.

use crate::call_id::{new_call_id, split_signature, with_signature};
use crate::completion::{Completion, ToolCall};
use crate::events::{ChatEvent, FinishReason};
use crate::request::{data_url, http_request, parse_arguments, stop_sequences};
use crate::{AdapterError, UpstreamRequest};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use tollgate_config::ProviderConfig;
use tollgate_types::{ChatRequest, Message, Usage};

pub(crate) fn chat_request(
    p: &ProviderConfig,
    req: &ChatRequest,
    model: &str,
) -> Result<UpstreamRequest, AdapterError> {
    let mut body = Map::new();
    let (system, contents) = contents(&req.messages);
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let x = &req.extra;
    let tools: Vec<Value> = x
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(function_declaration)
        .collect();
    if !tools.is_empty() {
        body.insert("tools".into(), json!([{"functionDeclarations": tools}]));
    }
    if let Some(config) = tool_config(x.get("tool_choice")) {
        body.insert("toolConfig".into(), config);
    }
    let generation = generation_config(req);
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    let body = serde_json::to_vec(&body).map_err(AdapterError::Encode)?;
    let path = if req.is_stream() {
        format!(
            "{}/models/{model}:streamGenerateContent?alt=sse",
            p.base_url.path
        )
    } else {
        format!("{}/models/{model}:generateContent", p.base_url.path)
    };
    Ok(http_request(p, path, body, req.is_stream()))
}

fn generation_config(req: &ChatRequest) -> Map<String, Value> {
    let x = &req.extra;
    let mut g = Map::new();
    if let Some(max) = req.output_cap() {
        g.insert("maxOutputTokens".into(), max.into());
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = x.get(from).filter(|v| v.is_number()) {
            g.insert(to.into(), v.clone());
        }
    }
    if let Some(stop) = stop_sequences(x) {
        g.insert("stopSequences".into(), stop);
    }
    let format = x.get("response_format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => {
            g.insert("responseMimeType".into(), "application/json".into());
        }
        Some("json_schema") => {
            g.insert("responseMimeType".into(), "application/json".into());
            if let Some(schema) = format.and_then(|f| f.pointer("/json_schema/schema")) {
                g.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        _ => {}
    }
    g
}

/// System text parts, and the conversation as `contents` with consecutive same-role turns
/// merged. Tool results become `functionResponse` parts named after the call they answer.
fn contents(input: &[Message]) -> (Vec<Value>, Vec<Value>) {
    let mut system = Vec::new();
    let mut out: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: Vec<(&str, &str)> = Vec::new();
    for m in input {
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                system.extend(parts(&m.content));
                continue;
            }
            "assistant" => {
                let mut p = parts(&m.content);
                let calls = m.extra.get("tool_calls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    let s = |ptr: &str| call.pointer(ptr).and_then(Value::as_str);
                    let name = s("/function/name").unwrap_or_default();
                    if let Some(id) = s("/id") {
                        call_names.push((id, name));
                    }
                    let args = parse_arguments(s("/function/arguments").unwrap_or_default());
                    let mut part = json!({"functionCall": {"name": name, "args": args}});
                    if let Some(sig) = s("/id").and_then(|id| split_signature(id).1) {
                        part["thoughtSignature"] = Value::String(sig);
                    }
                    p.push(part);
                }
                ("model", p)
            }
            "tool" | "function" => {
                let id = m.extra.get("tool_call_id").and_then(Value::as_str);
                let name = id
                    .and_then(|id| call_names.iter().rfind(|(i, _)| *i == id))
                    .map(|(_, n)| *n)
                    .or_else(|| m.extra.get("name").and_then(Value::as_str))
                    .unwrap_or_default();
                let text = m.text();
                // `response` must be an object: JSON objects go as they are, anything else
                // is wrapped.
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({"content": text}),
                };
                let part = json!({"functionResponse": {"name": name, "response": response}});
                ("user", vec![part])
            }
            _ => ("user", parts(&m.content)),
        };
        if parts.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => out.push((role, parts)),
        }
    }
    let contents = out
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    (system, contents)
}

fn parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"text": s})],
        Value::Array(items) => items.iter().filter_map(part).collect(),
        _ => Vec::new(),
    }
}

fn part(item: &Value) -> Option<Value> {
    match item.get("type").and_then(Value::as_str)? {
        "text" => {
            let t = item.get("text").and_then(Value::as_str)?;
            (!t.is_empty()).then(|| json!({"text": t}))
        }
        "image_url" => {
            let url = item
                .pointer("/image_url/url")
                .or_else(|| item.get("image_url"))
                .and_then(Value::as_str)?;
            Some(match data_url(url) {
                Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
                None => json!({"fileData": {"mimeType": mime_from_url(url), "fileUri": url}}),
            })
        }
        _ => None,
    }
}

fn mime_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

fn function_declaration(t: &Value) -> Option<Value> {
    let f = t.get("function")?;
    let mut out = Map::new();
    out.insert("name".into(), f.get("name")?.clone());
    if let Some(d) = f.get("description") {
        out.insert("description".into(), d.clone());
    }
    // Full JSON Schema (`additionalProperties`, `$schema`, `const`, ...), which the OpenAPI
    // subset in `parameters` rejects.
    if let Some(p) = f.get("parameters") {
        out.insert("parametersJsonSchema".into(), p.clone());
    }
    Some(Value::Object(out))
}

fn tool_config(choice: Option<&Value>) -> Option<Value> {
    let config = match choice? {
        Value::String(s) => match s.as_str() {
            "required" => json!({"mode": "ANY"}),
            "none" => json!({"mode": "NONE"}),
            _ => json!({"mode": "AUTO"}),
        },
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name"))?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => return None,
    };
    Some(json!({"functionCallingConfig": config}))
}

/// A `generateContent` response, decoded into the canonical completion.
pub(crate) fn decode_response(body: &[u8]) -> Result<Completion<'static>, AdapterError> {
    let v: Value = serde_json::from_slice(body).map_err(AdapterError::Decode)?;
    // Without `alt=sse` a stream is a JSON array of responses; accept one-element arrays too.
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    };
    if v.get("candidates").is_none() && v.get("usageMetadata").is_none() {
        return Err(AdapterError::Shape(
            "no `candidates` in the Gemini response",
        ));
    }
    let candidate = v.pointer("/candidates/0");
    let s = |k: &str| {
        Cow::Owned(
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let mut out = Completion {
        id: s("responseId"),
        model: s("modelVersion"),
        usage: v.get("usageMetadata").map(Usage::from_gemini),
        ..Completion::default()
    };
    let parts = candidate
        .and_then(|c| c.pointer("/content/parts"))
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            let target = if p.get("thought").and_then(Value::as_bool) == Some(true) {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            target.push(Cow::Owned(t.to_owned()));
        } else if p.get("functionCall").is_some() {
            let (id, name, arguments) = function_call(p);
            out.tool_calls.push(ToolCall {
                id: Cow::Owned(id),
                name: Cow::Owned(name),
                arguments: Cow::Owned(arguments),
            });
        }
    }
    out.finish = Some(if prompt_blocked(&v) {
        FinishReason::ContentFilter
    } else {
        finish_reason(candidate, !out.tool_calls.is_empty())
    });
    Ok(out)
}

/// A function call part's id (Gemini's own when it sends one, else a fresh one, so ids never
/// repeat across turns), name and JSON-string arguments. A thought signature rides in the id
/// (see `call_id.rs`).
fn function_call(part: &Value) -> (String, String, String) {
    let fc = part.get("functionCall").unwrap_or(&Value::Null);
    let mut id = fc
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(new_call_id, str::to_owned);
    if let Some(sig) = part.get("thoughtSignature").and_then(Value::as_str) {
        id = with_signature(&id, sig);
    }
    let name = fc.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = fc
        .get("args")
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    (id, name.to_owned(), args)
}

/// A prompt Gemini's safety filters refused answers with `promptFeedback.blockReason` and no
/// candidates at all.
fn prompt_blocked(v: &Value) -> bool {
    v.pointer("/promptFeedback/blockReason").is_some()
}

fn finish_reason(candidate: Option<&Value>, called_tools: bool) -> FinishReason {
    let reason = candidate
        .and_then(|c| c.get("finishReason"))
        .and_then(Value::as_str)
        .map_or(FinishReason::Stop, FinishReason::from_gemini);
    // Gemini says STOP after a function call; OpenAI clients look for `tool_calls`.
    if called_tools && reason == FinishReason::Stop {
        FinishReason::ToolCalls
    } else {
        reason
    }
}

/// Decodes `streamGenerateContent?alt=sse`: each event is a whole `GenerateContentResponse`
/// carrying the next parts. Function calls arrive whole; the stream has no end marker.
#[derive(Debug, Default)]
pub struct GeminiStreamDecoder {
    started: bool,
    tools: u32,
}

impl GeminiStreamDecoder {
    /// Decodes one SSE `data:` payload.
    pub fn decode(&mut self, data: &str, out: &mut Vec<ChatEvent>) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if let Some(e) = v.get("error") {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
            out.push(ChatEvent::Error {
                kind: s("status").unwrap_or_else(|| "INTERNAL".to_owned()),
                message: s("message").unwrap_or_default(),
            });
            return;
        }
        if !self.started {
            self.started = true;
            let s = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            out.push(ChatEvent::Start {
                id: s("responseId"),
                model: s("modelVersion"),
            });
        }
        let candidate = v.pointer("/candidates/0");
        let parts = candidate
            .and_then(|c| c.pointer("/content/parts"))
            .and_then(Value::as_array);
        for p in parts.into_iter().flatten() {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                let thought = p.get("thought").and_then(Value::as_bool) == Some(true);
                match (t.is_empty(), thought) {
                    (true, _) => {}
                    (false, true) => out.push(ChatEvent::Reasoning(t.to_owned())),
                    (false, false) => out.push(ChatEvent::Text(t.to_owned())),
                }
            } else if p.get("functionCall").is_some() {
                let index = self.tools;
                self.tools += 1;
                let (id, name, json) = function_call(p);
                out.push(ChatEvent::ToolCall { index, id, name });
                out.push(ChatEvent::ToolArgs { index, json });
            }
        }
        if prompt_blocked(&v) {
            out.push(ChatEvent::Finish(FinishReason::ContentFilter));
        } else if candidate.and_then(|c| c.get("finishReason")).is_some() {
            out.push(ChatEvent::Finish(finish_reason(candidate, self.tools > 0)));
        }
        if let Some(u) = v.get("usageMetadata") {
            out.push(ChatEvent::Usage(Usage::from_gemini(u)));
        }
    }
}

/// Reads a Gemini error body: `(status, message)`.
pub(crate) fn decode_error(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.remove(0),
        v => v,
    };
    let e = v.get("error")?;
    let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((
        s("status").unwrap_or_else(|| "UNKNOWN".to_owned()),
        s("message").unwrap_or_default(),
    ))
}
