//! `POST {prefix}/models/{model}:generateContent` and `:streamGenerateContent`: the answer
//! rendered in Gemini's format, as JSON, SSE (`?alt=sse`) or a streamed JSON array.
//!
//! Request fields are read in camelCase or snake_case, as Google's REST API accepts both.

use crate::answer::{self, Answer, Finish, Prompt, ToolCall};
use crate::http::{MockBody, json, json_stream, malformed, sse};
use crate::stream::{self, Event, Pacing};
use crate::{MockConfig, faults::Faults};
use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

/// A Gemini call, read from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    /// The model, percent-decoded.
    pub(crate) model: String,
    pub(crate) mode: Mode,
}

/// How the answer goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `:generateContent`: one JSON object.
    Whole,
    /// `:streamGenerateContent?alt=sse`: `data:` events.
    Sse,
    /// `:streamGenerateContent` without `alt=sse`: a JSON array, streamed element by element.
    Array,
}

impl Call {
    /// Reads `.../models/{model}:{method}` with any prefix (`/v1beta`, a Vertex path...).
    pub(crate) fn parse(path: &str, query: Option<&str>) -> Option<Call> {
        let at = path.rfind("/models/")?;
        let rest = percent_decode(&path[at + "/models/".len()..]);
        let (model, method) = rest.rsplit_once(':')?;
        if model.is_empty() || model.contains('/') {
            return None;
        }
        let sse = query.is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .any(|(k, v)| k == "alt" && v.eq_ignore_ascii_case("sse"))
        });
        let mode = match method {
            "generateContent" => Mode::Whole,
            "streamGenerateContent" if sse => Mode::Sse,
            "streamGenerateContent" => Mode::Array,
            _ => return None,
        };
        Some(Call {
            model: model.to_owned(),
            mode,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn handle(
    body: &Bytes,
    call: &Call,
    config: &MockConfig,
    faults: &Faults,
) -> Response<MockBody> {
    let prompt = match parse(body) {
        Ok(p) => p,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    if faults.malformed {
        return malformed(b"{\"candidates\":[{\"content\":{");
    }
    let answer = Answer::new(prompt, faults);
    let render = Render {
        model: &call.model,
        answer: &answer,
    };
    let pacing = Pacing::new(config, faults);
    match call.mode {
        Mode::Whole => {
            let parts = match &answer.tool {
                Some(t) => function_call(t),
                None => json!({"text": answer.text()}),
            };
            json(StatusCode::OK, &render.chunk(parts, true))
        }
        Mode::Sse => {
            let events = render
                .chunks(&pacing)
                .into_iter()
                .map(|(c, delayed)| Event::new(format!("data: {c}\n\n"), delayed))
                .collect();
            sse(stream::spawn(events, None, &pacing))
        }
        Mode::Array => {
            let events = render
                .chunks(&pacing)
                .into_iter()
                .enumerate()
                .map(|(i, (c, delayed))| {
                    let sep = if i == 0 { "[" } else { ",\r\n" };
                    Event::new(format!("{sep}{c}"), delayed)
                })
                .collect();
            let trailer = Some(Bytes::from_static(b"]"));
            json_stream(stream::spawn(events, trailer, &pacing))
        }
    }
}

/// An error body in Google's shape, its `status` from the HTTP status.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    json(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": name}}),
    )
}

/// `v[camel]`, else `v[snake]`.
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn parse(body: &[u8]) -> Result<Prompt, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload: {e}"))?;
    let contents = v
        .get("contents")
        .and_then(Value::as_array)
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let system = field(&v, "systemInstruction", "system_instruction").map(|s| turn_text(s).0);
    let texts = contents.iter().map(|c| {
        let (text, results) = turn_text(c);
        answer::join(
            [text, results]
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
        )
    });
    let prompt_tokens = answer::prompt_tokens(system.into_iter().chain(texts));
    // A turn without a role is the user's; `function` is the legacy role of function responses.
    let seed_text = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str) != Some("model"))
        .map(|c| {
            let (text, results) = turn_text(c);
            if text.is_empty() { results } else { text }
        })
        .unwrap_or_default();
    let max_tokens = field(&v, "generationConfig", "generation_config")
        .and_then(|g| field(g, "maxOutputTokens", "max_output_tokens"))
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(Prompt {
        seed_text,
        prompt_tokens,
        max_tokens,
        tool: forced_function(&v),
        json_schema: None,
        model: String::new(),
        instructions: String::new(),
    })
}

/// A turn's text parts, and separately the text of its `functionResponse` parts.
fn turn_text(c: &Value) -> (String, String) {
    let parts = c.get("parts").and_then(Value::as_array);
    let parts = parts.map(Vec::as_slice).unwrap_or_default();
    let text = answer::join(
        parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str)),
    );
    let results: Vec<String> = parts
        .iter()
        .filter_map(|p| field(p, "functionResponse", "function_response")?.get("response"))
        .map(response_text)
        .collect();
    (text, results.join("\n"))
}

/// A function response's text: a string, a lone `content`/`result`/`output` string, or the JSON.
fn response_text(r: &Value) -> String {
    let single = ["content", "result", "output"]
        .iter()
        .find_map(|k| r.get(k)?.as_str());
    match (r, single) {
        (Value::String(s), _) => s.clone(),
        (Value::Object(o), Some(s)) if o.len() == 1 => s.to_owned(),
        _ => r.to_string(),
    }
}

/// The function mode `ANY` forces: the first allowed one, else the first declared.
fn forced_function(v: &Value) -> Option<ToolCall> {
    let config = field(v, "toolConfig", "tool_config")
        .and_then(|t| field(t, "functionCallingConfig", "function_calling_config"))?;
    if !config.get("mode")?.as_str()?.eq_ignore_ascii_case("any") {
        return None;
    }
    let declared: Vec<&Value> = v
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations")?.as_array())
        .flatten()
        .filter(|d| d.get("name").and_then(Value::as_str).is_some())
        .collect();
    let name_of = |d: &Value| d.get("name").and_then(Value::as_str).map(str::to_owned);
    let allowed: Vec<&str> = field(config, "allowedFunctionNames", "allowed_function_names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let decl = match allowed.first() {
        None => *declared.first()?,
        Some(_) => *declared
            .iter()
            .find(|d| name_of(d).is_some_and(|n| allowed.contains(&n.as_str())))?,
    };
    let schema = decl
        .get("parameters")
        .or_else(|| field(decl, "parametersJsonSchema", "parameters_json_schema"));
    Some(answer::tool_call(&name_of(decl)?, schema))
}

fn function_call(t: &ToolCall) -> Value {
    json!({"functionCall": {"name": t.name, "args": Value::Object(t.args.clone())}})
}

struct Render<'a> {
    model: &'a str,
    answer: &'a Answer,
}

impl Render<'_> {
    /// A response (or stream chunk) with one `part`; `last` adds the finish reason and the
    /// completion counts.
    fn chunk(&self, part: Value, last: bool) -> Value {
        let a = self.answer;
        let mut candidate = json!({"content": {"parts": [part], "role": "model"}, "index": 0});
        let mut usage = json!({"promptTokenCount": a.prompt_tokens,
            "totalTokenCount": a.prompt_tokens});
        if last {
            candidate["finishReason"] = match a.finish {
                Finish::Length => "MAX_TOKENS",
                Finish::Stop | Finish::Tool => "STOP",
            }
            .into();
            usage["candidatesTokenCount"] = a.completion_tokens.into();
            usage["totalTokenCount"] = (a.prompt_tokens + a.completion_tokens).into();
        }
        if a.cached_tokens > 0 {
            usage["cachedContentTokenCount"] = a.cached_tokens.into();
        }
        json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model,
            "responseId": format!("mock{}", a.hex())})
    }

    /// Stream chunks, each with whether it waits `chunk_delay`: a text chunk per token group
    /// (the last one finishing), or the whole function call in one.
    fn chunks(&self, pacing: &Pacing) -> Vec<(Value, bool)> {
        if let Some(t) = &self.answer.tool {
            return vec![(self.chunk(function_call(t), true), false)];
        }
        let texts: Vec<String> = self
            .answer
            .groups(pacing.chunks)
            .map(<[String]>::concat)
            .collect();
        let texts = if texts.is_empty() {
            vec![String::new()]
        } else {
            texts
        };
        let n = texts.len();
        texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| (self.chunk(json!({"text": t}), i + 1 == n), i > 0))
            .collect()
    }
}
