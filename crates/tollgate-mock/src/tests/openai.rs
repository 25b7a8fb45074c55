//! OpenAI chat completions: the shape other crates rely on, and cached tokens.

use super::{keys, post};
use serde_json::json;

#[tokio::test]
async fn openai_json_shape_is_unchanged() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "tell me a story"}]});
    let r = post("/v1/chat/completions", &[], &body).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        keys(&v),
        [
            "choices",
            "created",
            "id",
            "model",
            "object",
            "system_fingerprint",
            "usage"
        ]
    );
    assert!(v["id"].as_str().expect("id").starts_with("chatcmpl-mock"));
    assert_eq!(
        keys(&v["choices"][0]),
        ["finish_reason", "index", "logprobs", "message"]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        keys(&v["usage"]),
        [
            "completion_tokens",
            "completion_tokens_details",
            "prompt_tokens",
            "prompt_tokens_details",
            "total_tokens"
        ]
    );
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(
        v["usage"]["prompt_tokens_details"],
        json!({"cached_tokens": 0, "audio_tokens": 0})
    );
}

#[tokio::test]
async fn openai_cached_tokens_are_included_in_prompt_tokens() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "tell me a story"}],
        "stream": true, "stream_options": {"include_usage": true}});
    let hdr = [("x-mock-cached-tokens", "6")];
    let events = post("/v1/chat/completions", &hdr, &body).await;
    let text = events.text();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let usage_chunk = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .last()
        .expect("usage chunk");
    let u: serde_json::Value = serde_json::from_str(usage_chunk).expect("json");
    assert_eq!(u["usage"]["prompt_tokens"], 10);
    assert_eq!(u["usage"]["prompt_tokens_details"]["cached_tokens"], 6);
    let mut body = body;
    body["stream"] = false.into();
    let v = post(
        "/v1/chat/completions",
        &[("x-mock-cached-tokens", "50")],
        &body,
    )
    .await
    .json();
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
}
