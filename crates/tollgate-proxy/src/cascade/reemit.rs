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
    let header = crate::forward::stream_header(session, ctx);
    let (Ok(json), Ok(header)) = (serde_json::from_slice::<Value>(body), header) else {
        // Not a completion any more (a plugin rewrote it into something else): say so
        // rather than leave the client without an answer.
        let e = tollgate_types::ApiError::new(
            tollgate_types::ErrorKind::UpstreamFailed,
            "the answer could not be re-emitted as a stream",
        );
        ctx.error = Some(e.message.clone());
        let headers = crate::forward::served_headers(ctx);
        return crate::respond::send_json(
            session,
            ctx,
            e.status(),
            e.body_for(ctx.client_api),
            &headers,
        )
        .await
        .is_ok();
    };
    let events = render(&json, include_usage);
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

/// The SSE events of `completion`. Every chunk shares one envelope (id, created, model), written
/// once; only each piece's text is escaped per chunk.
pub fn render(completion: &Value, include_usage: bool) -> Bytes {
    let field = |name: &str| {
        serde_json::to_string(completion.get(name).unwrap_or(&Value::Null)).unwrap_or_default()
    };
    let mut head = format!(
        "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},",
        field("id"),
        field("created"),
        field("model")
    );
    if completion.get("system_fingerprint").is_some() {
        head.push_str(&format!(
            "\"system_fingerprint\":{},",
            field("system_fingerprint")
        ));
    }
    head.push_str("\"choices\":[");
    let tail: &[u8] = if include_usage {
        b"],\"usage\":null}\n\n"
    } else {
        b"]}\n\n"
    };
    let env = Envelope {
        head: head.as_bytes(),
        tail,
    };
    let mut out = BytesMut::with_capacity(1024);
    let json = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let index = json(choice.get("index").unwrap_or(&json!(i)));
        let message = choice.get("message").unwrap_or(&Value::Null);
        let role = br#"{"role":"assistant","content":"","refusal":null}"#;
        env.chunk(&mut out, &index, role, b"null", b"null");
        let text = message.get("content").and_then(Value::as_str).unwrap_or("");
        let pieces = split(text);
        let last = pieces.len().saturating_sub(1);
        let mut delta = Vec::with_capacity(PIECE_BYTES + 16);
        for (n, piece) in pieces.into_iter().enumerate() {
            delta.clear();
            delta.extend_from_slice(b"{\"content\":");
            let _ = serde_json::to_writer(&mut delta, piece);
            delta.push(b'}');
            // Log-probabilities, when the client asked for them, come with the last piece.
            let lp = match choice.get("logprobs") {
                Some(lp) if n == last && !lp.is_null() => json(lp),
                _ => b"null".to_vec(),
            };
            env.chunk(&mut out, &index, &delta, &lp, b"null");
        }
        if let Some(refusal) = message.get("refusal").filter(|r| !r.is_null()) {
            let d = json(&json!({ "refusal": refusal }));
            env.chunk(&mut out, &index, &d, b"null", b"null");
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
            let d = json(&json!({ "tool_calls": calls }));
            env.chunk(&mut out, &index, &d, b"null", b"null");
        }
        let finish = json(choice.get("finish_reason").unwrap_or(&json!("stop")));
        env.chunk(&mut out, &index, b"{}", b"null", &finish);
    }
    if include_usage {
        out.put_slice(head.as_bytes());
        out.put_slice(b"],\"usage\":");
        out.put_slice(&json(completion.get("usage").unwrap_or(&Value::Null)));
        out.put_slice(b"}\n\n");
    }
    out.put_slice(b"data: [DONE]\n\n");
    out.freeze()
}

/// What every chunk of one stream shares: `data: {...,"choices":[` and `]}` (or
/// `],"usage":null}`).
struct Envelope<'a> {
    head: &'a [u8],
    tail: &'a [u8],
}

impl Envelope<'_> {
    /// One chunk of one choice.
    fn chunk(
        &self,
        out: &mut BytesMut,
        index: &[u8],
        delta: &[u8],
        logprobs: &[u8],
        finish: &[u8],
    ) {
        out.put_slice(self.head);
        out.put_slice(b"{\"index\":");
        out.put_slice(index);
        out.put_slice(b",\"delta\":");
        out.put_slice(delta);
        out.put_slice(b",\"logprobs\":");
        out.put_slice(logprobs);
        out.put_slice(b",\"finish_reason\":");
        out.put_slice(finish);
        out.put_slice(b"}");
        out.put_slice(self.tail);
    }
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
