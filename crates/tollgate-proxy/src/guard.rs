//! Guardrails in the request path: built once per config version from `[[guardrails]]`, run
//! on a chat request before it is routed, on a complete answer before it is sent, and on a
//! stream chunk by chunk (stopping it with an SSE error event on a violation).

use crate::context::RequestCtx;
use serde_json::Value;
use tollgate_config::guardrails::{GuardKind, GuardrailConfig};
use tollgate_guard::injection::InjectionDetector;
use tollgate_guard::keywords::WordList;
use tollgate_guard::pii::{PiiDetector, PiiKind};
use tollgate_guard::{Action, Check, Denied, Guardrail, Guardrails, StreamVerdict};
use tollgate_types::{ApiError, ChatRequest, ClientApi, ErrorKind};

/// Compiles the config's guardrails.
pub fn build(config: &[GuardrailConfig]) -> Guardrails {
    Guardrails::new(
        config
            .iter()
            .map(|g| Guardrail {
                name: g.name.clone(),
                check: match &g.kind {
                    GuardKind::Pii(kinds) => {
                        let kinds: Vec<PiiKind> = PiiKind::ALL
                            .iter()
                            .filter(|(n, _)| kinds.iter().any(|k| k == n))
                            .map(|(_, k)| *k)
                            .collect();
                        Check::Pii(PiiDetector::new(&kinds))
                    }
                    GuardKind::Keywords(words) => Check::DenyWords(WordList::new(words)),
                    GuardKind::Topics(words) => Check::AllowTopics(WordList::new(words)),
                    GuardKind::Injection(t) => Check::Injection(InjectionDetector::default(), *t),
                    GuardKind::MaxPromptTokens(n) => Check::MaxPromptTokens(*n),
                    GuardKind::JsonSchema(repair) => Check::JsonSchema { repair: *repair },
                },
                action: if g.redact {
                    Action::Redact
                } else {
                    Action::Deny
                },
                on_request: g.on_request,
                on_response: g.on_response,
                models: g.models.clone(),
            })
            .collect(),
    )
}

/// The client's error for a refusal: 403 `guardrail_denied`, naming the guardrail and what
/// it found, never the matched text.
fn refusal(ctx: &mut RequestCtx, denied: &Denied, stage: &'static str) -> ApiError {
    crate::metrics::record_guardrail(&denied.guardrail, stage);
    tracing::info!(request_id = %ctx.request_id, guardrail = %denied.guardrail,
        reason = %denied.reason, stage, "A guardrail refused.");
    ApiError::new(ErrorKind::PolicyDenied(403), denied.to_string()).with_code("guardrail_denied")
}

/// Runs the request-side guardrails on a chat request: it is redacted in place, or refused.
pub fn check_request(ctx: &mut RequestCtx, req: &mut ChatRequest) -> Result<(), ApiError> {
    let state = ctx.state.clone();
    if state.guardrails.is_empty() {
        return Ok(());
    }
    let Some(model) = ctx.model.clone() else {
        return Ok(());
    };
    match state.guardrails.check_request(&model, req) {
        Ok(report) => {
            if !report.redacted.is_empty() {
                // The client's own `/v1/messages` body still holds what was redacted.
                ctx.messages_body = None;
            }
            for (guardrail, what) in report.redacted {
                crate::metrics::record_guardrail(&guardrail, "redact_request");
                tracing::info!(request_id = %ctx.request_id, %guardrail, %what,
                    "A guardrail redacted the request.");
            }
            Ok(())
        }
        Err(denied) => Err(refusal(ctx, &denied, "deny_request")),
    }
}

/// The texts of a complete answer in the client's format.
pub(crate) fn answer_texts(api: ClientApi, body: &mut Value) -> Vec<&mut String> {
    let mut out = Vec::new();
    match api {
        ClientApi::OpenAi => {
            if let Some(Value::Array(choices)) = body.get_mut("choices") {
                for c in choices {
                    if let Some(m) = c.get_mut("message")
                        && let Some(Value::String(s)) = m.get_mut("content")
                    {
                        out.push(s);
                    }
                }
            }
        }
        ClientApi::Anthropic => {
            if let Some(Value::Array(blocks)) = body.get_mut("content") {
                for b in blocks {
                    if let Some(Value::String(s)) = b.get_mut("text") {
                        out.push(s);
                    }
                }
            }
        }
    }
    out
}

/// Runs the answer-side guardrails on a complete answer (the client's JSON body): the body
/// as it is, redacted, or a refusal.
pub fn check_answer(ctx: &mut RequestCtx, body: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
    let state = ctx.state.clone();
    if state.guardrails.is_empty() {
        return Ok(body);
    }
    let Some(model) = ctx.model.clone() else {
        return Ok(body);
    };
    if !state.guardrails.on_response(&model) {
        return Ok(body);
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    let mut redacted_by: Vec<String> = Vec::new();
    let mut denied = None;
    for text in answer_texts(ctx.client_api, &mut json) {
        match state.guardrails.check_answer(&model, text) {
            Ok(None) => {}
            Ok(Some((redacted, by))) => {
                *text = redacted;
                redacted_by.extend(by);
            }
            Err(d) => {
                denied = Some(d);
                break;
            }
        }
    }
    if let Some(d) = denied {
        return Err(refusal(ctx, &d, "deny_response"));
    }
    if redacted_by.is_empty() {
        return Ok(body);
    }
    redacted_by.sort();
    redacted_by.dedup();
    for g in &redacted_by {
        crate::metrics::record_guardrail(g, "redact_response");
    }
    Ok(bytes::Bytes::from(json.to_string()))
}

/// The answer text in complete SSE lines (OpenAI `choices[].delta.content`, Anthropic
/// `content_block_delta` text).
fn lines_text(api: ClientApi, bytes: &[u8]) -> String {
    let mut text = String::new();
    for line in bytes.split(|b| *b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) else {
            continue;
        };
        match api {
            ClientApi::OpenAi => {
                for c in v["choices"].as_array().into_iter().flatten() {
                    if let Some(s) = c["delta"]["content"].as_str() {
                        text.push_str(s);
                    }
                }
            }
            ClientApi::Anthropic => {
                if let Some(s) = v["delta"]["text"].as_str() {
                    text.push_str(s);
                }
            }
        }
    }
    text
}

/// A stream's answer guardrails, fed the client's SSE bytes as they go out. Pieces need not
/// end on a line (pass-through streams forward the provider's own chunks): a partial last
/// line waits for the rest.
#[derive(Debug)]
pub struct StreamGuardrails {
    check: tollgate_guard::StreamCheck,
    partial: Vec<u8>,
}

impl StreamGuardrails {
    /// Guardrails for one stream.
    pub fn new(check: tollgate_guard::StreamCheck) -> StreamGuardrails {
        StreamGuardrails {
            check,
            partial: Vec::new(),
        }
    }

    /// The text of the lines that `bytes` completes (every line, once the stream `ended`).
    fn text(&mut self, api: ClientApi, bytes: &[u8], ended: bool) -> String {
        self.partial.extend_from_slice(bytes);
        let complete: Vec<u8> = if ended {
            std::mem::take(&mut self.partial)
        } else {
            let Some(last_newline) = self.partial.iter().rposition(|b| *b == b'\n') else {
                return String::new();
            };
            self.partial.drain(..=last_newline).collect()
        };
        lines_text(api, &complete)
    }
}

/// What to do with a piece of a stream.
pub enum StreamStep {
    /// Send it (and anything held before it).
    Send,
    /// Hold it back: a match may be forming at its end.
    Hold,
    /// Stop the stream with this error (nothing held is sent).
    Stop(ApiError),
}

/// Checks a piece of a stream before it is written (`ended`: the last piece).
pub fn check_stream(ctx: &mut RequestCtx, bytes: &[u8], ended: bool) -> StreamStep {
    let api = ctx.client_api;
    let Some(guard) = ctx.stream_check.as_mut() else {
        return StreamStep::Send;
    };
    let text = guard.text(api, bytes, ended);
    let mut verdict = guard.check.push(&text);
    if ended && verdict == StreamVerdict::Undecided {
        verdict = guard.check.finish();
    }
    match verdict {
        // A piece that ends inside a line has text no guardrail has read yet: it waits for
        // the rest of its line.
        StreamVerdict::Clear if !guard.partial.is_empty() => StreamStep::Hold,
        StreamVerdict::Clear => StreamStep::Send,
        StreamVerdict::Undecided => StreamStep::Hold,
        StreamVerdict::Stop(denied) => StreamStep::Stop(refusal(ctx, &denied, "stop_stream")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_text_reads_both_client_formats_across_split_pieces() {
        let openai: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                       data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(lines_text(ClientApi::OpenAi, openai), "Hello");
        let anthropic = b"event: content_block_delta\n\
            data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
        assert_eq!(lines_text(ClientApi::Anthropic, anthropic), "Hi");
        // An event split mid-line is read once its line is complete.
        let mut g = StreamGuardrails {
            check: Guardrails::new(vec![Guardrail {
                name: "g".to_owned(),
                check: Check::DenyWords(WordList::new(&["x".to_owned()])),
                action: Action::Deny,
                on_request: false,
                on_response: true,
                models: None,
            }])
            .stream("m")
            .expect("answer guardrail"),
            partial: Vec::new(),
        };
        let (a, b) = openai.split_at(20);
        assert_eq!(g.text(ClientApi::OpenAi, a, false), "");
        assert_eq!(g.text(ClientApi::OpenAi, b, false), "Hello");
        // A last line without its newline is read when the stream ends.
        assert_eq!(
            g.text(
                ClientApi::OpenAi,
                b"data: {\"choices\":[{\"delta\":{\"content\":\"!\"}}]}",
                true
            ),
            "!"
        );
    }
}
