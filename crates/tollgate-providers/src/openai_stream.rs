//! OpenAI chat chunks to and from the canonical [`ChatEvent`] stream.

use crate::events::{ChatEvent, FinishReason};
use crate::openai::usage_from_openai_family;
use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};
use tollgate_types::Usage;

/// Decodes OpenAI `chat.completion.chunk` events (for a client that speaks another dialect).
#[derive(Debug, Default)]
pub struct OpenAiStreamDecoder {
    started: bool,
}

impl OpenAiStreamDecoder {
    /// Decodes one SSE `data:` payload.
    pub fn decode(&mut self, data: &str, out: &mut Vec<ChatEvent>) {
        let data = data.trim();
        if data == "[DONE]" {
            out.push(ChatEvent::Done);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return; // keep-alives and vendor noise
        };
        if let Some(err) = v.get("error") {
            out.push(error_event(err));
            return;
        }
        // Azure's first event is prompt annotations with an empty id and no model: start at
        // the first event that names them.
        let s = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if !self.started && (s("id").is_some() || s("model").is_some()) {
            self.started = true;
            out.push(ChatEvent::Start {
                id: s("id").unwrap_or_default().to_owned(),
                model: s("model").unwrap_or_default().to_owned(),
            });
        }
        let choice = v.pointer("/choices/0");
        if let Some(delta) = choice.and_then(|c| c.get("delta")) {
            // DeepSeek and vLLM call it `reasoning_content`, OpenRouter and Groq `reasoning`.
            if let Some(text) = delta
                .get("reasoning_content")
                .or_else(|| delta.get("reasoning"))
                .and_then(Value::as_str)
                && !text.is_empty()
            {
                out.push(ChatEvent::Reasoning(text.to_owned()));
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                out.push(ChatEvent::Text(text.to_owned()));
            }
            for (position, call) in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                // Some servers leave out `index` when each delta carries whole calls.
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64) as u32;
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                    out.push(ChatEvent::ToolCall {
                        index,
                        id: id.to_owned(),
                        name: name.to_owned(),
                    });
                }
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str)
                    && !args.is_empty()
                {
                    out.push(ChatEvent::ToolArgs {
                        index,
                        json: args.to_owned(),
                    });
                }
            }
        }
        if let Some(reason) = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
        {
            out.push(ChatEvent::Finish(FinishReason::from_openai(reason)));
        }
        if let Some(u) = v
            .get("usage")
            .or_else(|| v.pointer("/x_groq/usage"))
            .and_then(usage_from_openai_family)
        {
            out.push(ChatEvent::Usage(u));
        }
    }
}

fn error_event(err: &Value) -> ChatEvent {
    let s = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
    ChatEvent::Error {
        kind: s("type").unwrap_or_else(|| "api_error".to_owned()),
        message: s("message").unwrap_or_else(|| err.to_string()),
    }
}

/// Encodes canonical events as OpenAI chat chunks, for an OpenAI client of a provider that
/// speaks another dialect.
#[derive(Debug)]
pub struct OpenAiStreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Option<Usage>,
    done: bool,
}

impl OpenAiStreamEncoder {
    /// An encoder; `include_usage` is whether the client asked for the final usage chunk.
    pub fn new(include_usage: bool, created: u64) -> Self {
        OpenAiStreamEncoder {
            id: String::new(),
            model: String::new(),
            created,
            include_usage,
            usage: None,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut BytesMut) {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null; // as OpenAI does when usage was asked for
        }
        write_data(&c, out);
    }

    /// Appends the SSE bytes for `event` to `out`.
    pub fn encode(&mut self, event: &ChatEvent, out: &mut BytesMut) {
        if self.done {
            return;
        }
        match event {
            ChatEvent::Start { id, model } => {
                self.id = format!("chatcmpl-{}", id.strip_prefix("chatcmpl-").unwrap_or(id));
                self.model.clone_from(model);
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            ChatEvent::Text(t) => self.chunk(json!({"content": t}), None, out),
            ChatEvent::Reasoning(t) => self.chunk(json!({"reasoning_content": t}), None, out),
            ChatEvent::ToolCall { index, id, name } => self.chunk(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
                out,
            ),
            ChatEvent::ToolArgs { index, json } => self.chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": json}}]}),
                None,
                out,
            ),
            ChatEvent::Finish(reason) => self.chunk(json!({}), Some(reason.openai()), out),
            ChatEvent::Usage(u) => self.usage = Some(*u),
            ChatEvent::Error { kind, message } => {
                let e = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
                write_data(&e, out);
            }
            ChatEvent::Done => {
                if self.include_usage
                    && let Some(u) = self.usage
                {
                    let c = json!({"id": self.id, "object": "chat.completion.chunk",
                        "created": self.created, "model": self.model, "choices": [],
                        "usage": u.to_openai()});
                    write_data(&c, out);
                }
                out.put_slice(b"data: [DONE]\n\n");
                self.done = true;
            }
        }
    }
}

fn write_data(v: &Value, out: &mut BytesMut) {
    out.put_slice(b"data: ");
    // Writing into a BytesMut cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), v);
    out.put_slice(b"\n\n");
}
