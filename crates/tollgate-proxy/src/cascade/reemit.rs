//! A complete OpenAI answer re-emitted as the SSE stream a streaming client asked for: a role
//! chunk, content chunks, the finish chunk, the usage chunk if asked for, then `[DONE]`, as
//! OpenAI streams them.

use crate::context::RequestCtx;
use bytes::{BufMut, Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::{Value, json};

/// Content is sent in pieces of about this many bytes (at word boundaries where there are).
const PIECE_BYTES: usize = 48;

/// Writes `body` (an OpenAI `chat.completion`) to the client as a stream. `false`: the client
/// is gone.
pub async fn send(
    session: &mut Session,
    ctx: &mut RequestCtx,
    body: &[u8],
    include_usage: bool,
) -> bool {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let events = render(&json, include_usage);
    let Ok(header) = crate::forward::stream_header(session, ctx) else {
        return false;
    };
    ctx.status = 200;
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_err()
    {
        return false;
    }
    ctx.ttft = Some(ctx.started.elapsed());
    session
        .write_response_body(Some(events), false)
        .await
        .is_ok()
        && session.write_response_body(None, true).await.is_ok()
}

/// The SSE events of `completion`.
pub fn render(completion: &Value, include_usage: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    let base = |choices: Value| {
        let mut chunk = json!({
            "id": completion.get("id").cloned().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": completion.get("created").cloned().unwrap_or(Value::Null),
            "model": completion.get("model").cloned().unwrap_or(Value::Null),
            "choices": choices,
        });
        if let Some(fp) = completion.get("system_fingerprint") {
            chunk["system_fingerprint"] = fp.clone();
        }
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    };
    let mut event = |v: Value| {
        out.put_slice(b"data: ");
        out.put_slice(v.to_string().as_bytes());
        out.put_slice(b"\n\n");
    };
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice.get("index").cloned().unwrap_or_else(|| json!(i));
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let delta = |d: Value, logprobs: Value| {
            json!([{"index": index, "delta": d,
            "logprobs": logprobs, "finish_reason": null}])
        };
        event(base(delta(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        )));
        let text = message.get("content").and_then(Value::as_str).unwrap_or("");
        let pieces = split(text);
        let last = pieces.len().saturating_sub(1);
        for (n, piece) in pieces.into_iter().enumerate() {
            // Log-probabilities, when the client asked for them, come with the last piece.
            let lp = if n == last {
                choice.get("logprobs").cloned().unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            event(base(delta(json!({ "content": piece }), lp)));
        }
        if let Some(refusal) = message.get("refusal").filter(|r| !r.is_null()) {
            event(base(delta(json!({ "refusal": refusal }), Value::Null)));
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let mut c = c.clone();
                    c["index"] = json!(k);
                    c
                })
                .collect();
            event(base(delta(json!({ "tool_calls": calls }), Value::Null)));
        }
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        event(base(json!([{"index": index, "delta": {}, "logprobs": null,
            "finish_reason": finish}])));
    }
    if include_usage {
        let mut chunk = base(json!([]));
        chunk["usage"] = completion.get("usage").cloned().unwrap_or(Value::Null);
        event(chunk);
    }
    out.put_slice(b"data: [DONE]\n\n");
    out.freeze()
}

/// `text` in pieces of about [`PIECE_BYTES`], cut after a space where one is near.
fn split(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > PIECE_BYTES {
        let cut = rest.floor_char_boundary(PIECE_BYTES);
        let at = rest[..cut].rfind(' ').map_or(cut, |sp| sp + 1);
        let at = if at == 0 {
            rest.ceil_char_boundary(1)
        } else {
            at
        };
        pieces.push(&rest[..at]);
        rest = &rest[at..];
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_becomes_a_stream_that_says_the_same() {
        let text = "The answer is forty-two, which is six times seven; ünïcode ✓ too, and \
                    more words to need a few pieces.";
        let completion = json!({"id": "c1", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 20, "total_tokens": 23}});
        let out = render(&completion, true);
        let text_out = std::str::from_utf8(&out).expect("utf8");
        let events: Vec<Value> = text_out
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).expect("json"))
            .collect();
        assert!(text_out.ends_with("data: [DONE]\n\n"));
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        let joined: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(joined, text);
        assert!(events.len() > 4, "content comes in pieces");
        let finish = &events[events.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let usage = events.last().expect("usage");
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 23);
        assert!(
            events
                .iter()
                .all(|e| e["object"] == "chat.completion.chunk")
        );
    }

    #[test]
    fn without_usage_there_is_no_usage_chunk() {
        let completion = json!({"choices": [{"index": 0,
            "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"total_tokens": 1}});
        let out = render(&completion, false);
        assert!(!std::str::from_utf8(&out).expect("utf8").contains("usage"));
    }
}
