//! Anthropic and Gemini upstreams, and the inbound Messages API, through the real binary: the
//! failure paths the official-SDK tests (`tests/e2e/test_cross_format.py`) do not reach.

use crate::harness::{Gateway, chat, mock};
use serde_json::{Value, json};

/// A provider of `kind` (`anthropic` or `gemini`) pointed at an in-test mock, with `x-mock-*`
/// headers. The mock answers every wire format; the kind's preset picks the adapter.
fn native_provider(name: &str, kind: &str, base_url: &str, headers: &str) -> String {
    let base = match kind {
        "gemini" => base_url.replace("/v1", "/v1beta"),
        _ => base_url.to_owned(),
    };
    format!(
        "[providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{base}\"\n\
         first_byte_timeout_ms = 2000\nidle_timeout_ms = 2000\nheaders = {{ {headers} }}\n"
    )
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "hello there"}]})
}

/// SSE `(event name, data)` pairs of a whole response.
async fn sse(resp: reqwest::Response) -> Vec<(Option<String>, String)> {
    let text = resp.text().await.expect("body");
    let mut splitter = tollgate_providers::SseSplitter::default();
    splitter
        .push(text.as_bytes())
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overloaded_anthropic_target_fails_over() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&format!(
        "{}\n{}\n[models.m]\nretries = 0\ntargets = [{{ provider = \"claude\", model = \"c\" }}, {{ provider = \"gem\", model = \"g\" }}]\n",
        native_provider("claude", "anthropic", &a.base_url(), "\"x-mock-status\" = \"529\""),
        native_provider("gem", "gemini", &b.base_url(), ""),
    ))
    .await;
    let resp = gw.chat("m", "hi").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-provider"], "gem");
    assert_eq!(resp.headers()["x-tollgate-attempts"], "2");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!((a.stats.requests(), b.stats.requests()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_rejection_reaches_each_client_in_its_own_shape() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"claude\", model = \"c\" }}]\n",
        native_provider(
            "claude",
            "anthropic",
            &a.base_url(),
            "\"x-mock-status\" = \"400\""
        ),
    ))
    .await;
    let resp = gw.chat("m", "hi").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()["x-tollgate-attempts"],
        "1",
        "a 400 is not retried elsewhere"
    );
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mock")),
        "{v}"
    );

    let resp = gw
        .post("/v1/messages")
        .json(&messages_body("m", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_messages_stream_that_breaks_ends_with_an_anthropic_error_event() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"claude\", model = \"c\" }}]\n",
        native_provider(
            "claude",
            "anthropic",
            &a.base_url(),
            "\"x-mock-reset-after\" = \"6\", \"x-mock-chunk-delay-ms\" = \"10\""
        ),
    ))
    .await;
    let resp = gw
        .post("/v1/messages")
        .json(&messages_body("m", true))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let events = sse(resp).await;
    assert_eq!(events[0].0.as_deref(), Some("message_start"));
    let (name, data) = events.last().expect("events");
    assert_eq!(name.as_deref(), Some("error"), "{events:?}");
    let v: Value = serde_json::from_str(data).expect("json");
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream"))
    );
    assert!(
        events
            .iter()
            .all(|(n, _)| n.as_deref() != Some("message_stop"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gemini_stream_that_breaks_ends_with_an_openai_error_event() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"gem\", model = \"g\" }}]\n",
        native_provider(
            "gem",
            "gemini",
            &a.base_url(),
            "\"x-mock-reset-after\" = \"3\", \"x-mock-chunk-delay-ms\" = \"10\""
        ),
    ))
    .await;
    let mut body = chat("m", "hi");
    body["stream"] = json!(true);
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let events = sse(resp).await;
    let last: Value = serde_json::from_str(&events.last().expect("events").1).expect("json");
    assert_eq!(last["error"]["code"], "upstream_stream_error");
    assert!(events.iter().all(|(_, d)| d != "[DONE]"));
    assert!(
        events.len() > 2,
        "content arrived before the break: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_requests_are_validated_in_anthropic_shape() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"claude\", model = \"c\" }}]\n",
        native_provider("claude", "anthropic", &a.base_url(), ""),
    ))
    .await;
    let resp = gw
        .post("/v1/messages")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_tokens")),
        "{v}"
    );
    assert_eq!(a.stats.requests(), 0, "nothing reached the provider");
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", "sk-wrong")
        .json(&messages_body("m", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "authentication_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_usage_with_cache_reads_is_counted_once() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"claude\", model = \"c\" }}]\n",
        native_provider(
            "claude",
            "anthropic",
            &a.base_url(),
            "\"x-mock-cached-tokens\" = \"8\""
        ),
    ))
    .await;
    let v: Value = gw
        .chat("m", "a prompt long enough to cache")
        .await
        .json()
        .await
        .expect("json");
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 8);
    let prompt = u["prompt_tokens"].as_u64().expect("prompt_tokens");
    // The same prompt through the Messages API: input_tokens excludes cache reads again.
    let m: Value = gw.post("/v1/messages")
        .json(&json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "a prompt long enough to cache"}]}))
        .send().await.expect("send").json().await.expect("json");
    assert_eq!(m["usage"]["cache_read_input_tokens"], 8);
    assert_eq!(m["usage"]["input_tokens"].as_u64(), Some(prompt - 8));
}

/// What the mock logged for its last request.
async fn last_request(m: &tollgate_mock::MockHandle) -> Value {
    let log: Value = reqwest::get(format!("http://{}/mock/requests", m.addr))
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    log["requests"]
        .as_array()
        .and_then(|r| r.last().cloned())
        .expect("a request")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_messages_client_reaches_an_anthropic_provider_untranslated() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"claude\", model = \"claude-upstream\" }}]\n",
        native_provider("claude", "anthropic", &a.base_url(), ""),
    ))
    .await;
    // Fields and blocks the OpenAI shape cannot carry.
    let body = json!({
        "model": "m", "max_tokens": 64, "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "c2ln"},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": "rain", "is_error": false, "cache_control": {"type": "ephemeral"}}]}
        ]
    });
    let resp = gw
        .post("/v1/messages")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["type"], "message");
    assert!(
        answer["usage"]["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
    let sent = last_request(&a).await["body"].clone();
    assert_eq!(
        sent["model"], "claude-upstream",
        "only the model is rewritten"
    );
    let mut expected = body.clone();
    expected["model"] = json!("claude-upstream");
    assert_eq!(
        sent, expected,
        "everything else arrives as the client sent it"
    );
}
