//! Anthropic Messages: JSON and SSE, text and `tool_use`, errors, cached tokens.

use super::{keys, post, weather_args, weather_schema};
use serde_json::{Value, json};

fn request(prompt: &str) -> Value {
    json!({"model": "claude-x", "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}]})
}

fn with_tool(mut body: Value, choice: Value) -> Value {
    body["tools"] = json!([
        {"name": "noop", "description": "does nothing", "input_schema": {"type": "object"}},
        {"name": "get_weather", "description": "forecast", "input_schema": weather_schema(false)},
    ]);
    body["tool_choice"] = choice;
    body
}

#[tokio::test]
async fn anthropic_json_text_has_the_documented_shape() {
    let r = post(
        "/v1/messages",
        &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
        &request("tell me a story"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/json");
    let m = r.json();
    assert_eq!(
        keys(&m),
        [
            "content",
            "id",
            "model",
            "role",
            "stop_reason",
            "stop_sequence",
            "type",
            "usage"
        ]
    );
    assert!(m["id"].as_str().expect("id").starts_with("msg_"));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-x");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["stop_sequence"], Value::Null);
    let content = m["content"].as_array().expect("content");
    assert_eq!(content.len(), 1);
    assert_eq!(keys(&content[0]), ["text", "type"]);
    assert_eq!(content[0]["type"], "text");
    assert!(
        content[0]["text"]
            .as_str()
            .expect("text")
            .starts_with("Mock answer:")
    );
    let u = &m["usage"];
    assert_eq!(
        keys(u),
        [
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "input_tokens",
            "output_tokens"
        ]
    );
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
    // One message: (15 chars / 4 = 4) + 3, plus 3 for the reply.
    assert_eq!(u["input_tokens"], 10);
    assert!(u["output_tokens"].as_u64().expect("output") > 12);
}

#[tokio::test]
async fn anthropic_max_tokens_cuts_the_answer() {
    let mut body = request("tell me a story");
    body["max_tokens"] = 4.into();
    let m = post("/messages", &[], &body).await.json();
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["usage"]["output_tokens"], 4);
    let expected = crate::text::answer_tokens("tell me a story", Some(4))
        .0
        .concat();
    assert_eq!(m["content"][0]["text"], expected.as_str());
}

#[tokio::test]
async fn anthropic_requires_max_tokens() {
    let mut body = request("hi");
    body.as_object_mut().expect("obj").remove("max_tokens");
    let r = post("/v1/messages", &[], &body).await;
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("max_tokens")
    );
}

#[tokio::test]
async fn anthropic_json_tool_use_for_any_and_named_choice() {
    let any = post(
        "/v1/messages",
        &[],
        &with_tool(request("weather?"), json!({"type": "any"})),
    )
    .await
    .json();
    assert_eq!(any["stop_reason"], "tool_use");
    assert_eq!(any["content"][0]["name"], "noop");
    assert_eq!(any["content"][0]["input"], json!({}));

    let body = with_tool(
        request("weather?"),
        json!({"type": "tool", "name": "get_weather"}),
    );
    let m = post("/v1/messages", &[], &body).await.json();
    assert_eq!(m["stop_reason"], "tool_use");
    let block = &m["content"][0];
    assert_eq!(keys(block), ["id", "input", "name", "type"]);
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().expect("id").starts_with("toolu_mock"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], weather_args());
    let args_len = weather_args().to_string().len() as u64;
    assert_eq!(m["usage"]["output_tokens"], args_len.div_ceil(4) + 5);

    for choice in [json!({"type": "auto"}), json!({"type": "none"})] {
        let m = post("/v1/messages", &[], &with_tool(request("weather?"), choice))
            .await
            .json();
        assert_eq!(m["stop_reason"], "end_turn");
        assert_eq!(m["content"][0]["type"], "text");
    }
}

#[tokio::test]
async fn anthropic_sse_text_event_sequence() {
    let mut body = request("tell me a story");
    body["stream"] = true.into();
    let r = post("/v1/messages", &[("x-mock-chunks", "4")], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/event-stream");
    let events = r.events();
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_deref().expect("event name"))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for (name, data) in &events {
        assert_eq!(
            data["type"].as_str(),
            name.as_deref(),
            "data.type is the event name"
        );
    }
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(start["usage"]["input_tokens"], 10);
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(events[1].1["index"], 0);
    let text: String = events[3..7]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().expect("text").to_owned()
        })
        .collect();
    body["stream"] = false.into();
    let whole = post("/v1/messages", &[], &body).await.json();
    assert_eq!(text, whole["content"][0]["text"].as_str().expect("text"));
    assert_eq!(
        events[7].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[8].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": whole["usage"]["output_tokens"]}})
    );
    assert_eq!(events[0].1["message"]["id"], whole["id"]);
}

#[tokio::test]
async fn anthropic_sse_tool_use_streams_input_json() {
    let mut body = with_tool(
        request("weather?"),
        json!({"type": "tool", "name": "get_weather"}),
    );
    body["stream"] = true.into();
    let events = post("/v1/messages", &[("x-mock-chunks", "3")], &body)
        .await
        .events();
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_deref().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let block = &events[1].1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({}));
    assert!(block["id"].as_str().expect("id").starts_with("toolu_mock"));
    let pieces: Vec<&str> = events[3..7]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().expect("partial_json")
        })
        .collect();
    assert_eq!(pieces[0], "", "Anthropic's first partial_json is empty");
    let args: Value = serde_json::from_str(&pieces.concat()).expect("args JSON");
    assert_eq!(args, weather_args());
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn anthropic_seed_is_the_last_user_text_else_its_tool_results() {
    let answer = |messages: Value| async move {
        let body = json!({"model": "c", "max_tokens": 100, "system": [{"type": "text", "text": "sys"}],
            "messages": messages});
        post("/v1/messages", &[], &body).await.json()["content"][0]["text"].clone()
    };
    let plain = answer(json!([{"role": "user", "content": "sunny"}])).await;
    let tool_turn = |content: Value| {
        json!([{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "w", "input": {}}]},
            {"role": "user", "content": content}])
    };
    // Only a tool result: its text is the seed, whether a string or text blocks.
    let only_result = answer(tool_turn(
        json!([{"type": "tool_result", "tool_use_id": "t1",
        "content": "sunny"}]),
    ))
    .await;
    assert_eq!(only_result, plain);
    let blocks = answer(tool_turn(
        json!([{"type": "tool_result", "tool_use_id": "t1",
        "content": [{"type": "text", "text": "sunny"}]}]),
    ))
    .await;
    assert_eq!(blocks, plain);
    // A text block wins over the tool result.
    let text_too = answer(tool_turn(json!([
        {"type": "tool_result", "tool_use_id": "t1", "content": "rain"},
        {"type": "text", "text": "sunny"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    ])))
    .await;
    assert_eq!(text_too, plain);
}

#[tokio::test]
async fn anthropic_cached_tokens_are_excluded_from_input_tokens() {
    let body = request("tell me a story");
    let u = post("/v1/messages", &[("x-mock-cached-tokens", "6")], &body)
        .await
        .json()["usage"]
        .clone();
    assert_eq!(u["cache_read_input_tokens"], 6);
    assert_eq!(u["input_tokens"], 10 - 6);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    // Capped at the prompt size.
    let u = post("/v1/messages", &[("x-mock-cached-tokens", "999")], &body)
        .await
        .json()["usage"]
        .clone();
    assert_eq!(u["cache_read_input_tokens"], 10);
    assert_eq!(u["input_tokens"], 0);
    // The stream's message_start reports the same.
    let mut body = body;
    body["stream"] = true.into();
    let events = post("/v1/messages", &[("x-mock-cached-tokens", "6")], &body)
        .await
        .events();
    assert_eq!(
        events[0].1["message"]["usage"]["cache_read_input_tokens"],
        6
    );
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 4);
}

#[tokio::test]
async fn anthropic_injected_statuses_use_anthropic_error_types() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (502, "api_error"),
    ] {
        let s = status.to_string();
        let r = post(
            "/v1/messages",
            &[("x-mock-status", &s), ("x-mock-retry-after", "3")],
            &request("hi"),
        )
        .await;
        assert_eq!(r.status.as_u16(), status);
        assert_eq!(r.content_type(), "application/json");
        assert_eq!(r.headers["retry-after"], "3");
        let e = r.json();
        assert_eq!(keys(&e), ["error", "type"]);
        assert_eq!(e["type"], "error");
        assert_eq!(keys(&e["error"]), ["message", "type"]);
        assert_eq!(e["error"]["type"], kind);
    }
}
