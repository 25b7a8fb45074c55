//! Gemini: URL parsing, JSON, SSE and the streamed JSON array, function calls, errors, cache.

use super::{keys, post, sse_events, weather_args, weather_schema};
use crate::gemini::{Call, Mode};
use serde_json::{Value, json};

const GENERATE: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const STREAM_SSE: &str = "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse";
const STREAM_ARRAY: &str = "/v1beta/models/gemini-2.0-flash:streamGenerateContent";

fn request(prompt: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
}

fn with_function(mut body: Value, config: Value) -> Value {
    body["tools"] = json!([{"functionDeclarations": [
        {"name": "noop", "description": "does nothing"},
        {"name": "get_weather", "description": "forecast", "parameters": weather_schema(true)},
    ]}]);
    body["toolConfig"] = json!({"functionCallingConfig": config});
    body
}

#[test]
fn gemini_urls_parse_with_any_prefix() {
    let call = |path: &str, query: Option<&str>| Call::parse(path, query);
    let model = |m: &str, mode| {
        Some(Call {
            model: m.to_owned(),
            mode,
        })
    };
    assert_eq!(
        call("/v1beta/models/gemini-2.0-flash:generateContent", None),
        model("gemini-2.0-flash", Mode::Whole)
    );
    assert_eq!(
        call("/models/g:streamGenerateContent", Some("alt=sse")),
        model("g", Mode::Sse)
    );
    assert_eq!(
        call("/v1/models/g:streamGenerateContent", Some("key=k&alt=SSE")),
        model("g", Mode::Sse)
    );
    assert_eq!(
        call("/v1/models/g:streamGenerateContent", Some("key=k")),
        model("g", Mode::Array)
    );
    assert_eq!(
        call(
            "/v1/projects/p/locations/us/publishers/google/models/gemini%2D1.5%40001:generateContent",
            None
        ),
        model("gemini-1.5@001", Mode::Whole)
    );
    assert_eq!(
        call("/v1beta/models/g%3AgenerateContent", None),
        model("g", Mode::Whole)
    );
    assert_eq!(call("/v1beta/models/g:countTokens", None), None);
    assert_eq!(call("/v1beta/models/:generateContent", None), None);
    assert_eq!(call("/v1beta/models/g", None), None);
}

#[tokio::test]
async fn gemini_json_text_has_the_documented_shape() {
    let r = post(
        &format!("{GENERATE}?key=k"),
        &[("x-goog-api-key", "k")],
        &request("tell me a story"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/json");
    let v = r.json();
    assert_eq!(
        keys(&v),
        ["candidates", "modelVersion", "responseId", "usageMetadata"]
    );
    assert_eq!(v["modelVersion"], "gemini-2.0-flash");
    let c = &v["candidates"][0];
    assert_eq!(keys(c), ["content", "finishReason", "index"]);
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["index"], 0);
    assert_eq!(c["content"]["role"], "model");
    let text = c["content"]["parts"][0]["text"].as_str().expect("text");
    assert!(text.starts_with("Mock answer:"));
    let u = &v["usageMetadata"];
    assert_eq!(
        keys(u),
        [
            "candidatesTokenCount",
            "promptTokenCount",
            "totalTokenCount"
        ]
    );
    assert_eq!(u["promptTokenCount"], 10);
    let n = u["candidatesTokenCount"].as_u64().expect("n");
    assert_eq!(u["totalTokenCount"], 10 + n);
}

#[tokio::test]
async fn gemini_max_output_tokens_finishes_with_max_tokens() {
    let mut body = request("tell me a story");
    body["generationConfig"] =
        json!({"maxOutputTokens": 5, "temperature": 0.2, "stopSequences": ["x"]});
    let v = post(GENERATE, &[], &body).await.json();
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 5);
    // snake_case fields, as Google's REST API also accepts.
    let body = json!({"contents": [{"parts": [{"text": "tell me a story"}]}],
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "generation_config": {"max_output_tokens": 5}});
    let snake = post(GENERATE, &[], &body).await.json();
    assert_eq!(
        snake["candidates"][0]["content"],
        v["candidates"][0]["content"]
    );
    assert_eq!(snake["usageMetadata"]["promptTokenCount"], 10 + 2 + 3);
}

#[tokio::test]
async fn gemini_function_call_when_mode_is_any() {
    let any = post(
        GENERATE,
        &[],
        &with_function(request("weather?"), json!({"mode": "ANY"})),
    )
    .await
    .json();
    assert_eq!(
        any["candidates"][0]["content"]["parts"][0],
        json!({"functionCall": {"name": "noop", "args": {}}})
    );
    assert_eq!(any["candidates"][0]["finishReason"], "STOP");

    let body = with_function(
        request("weather?"),
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    );
    let v = post(GENERATE, &[], &body).await.json();
    let c = &v["candidates"][0];
    assert_eq!(c["content"]["role"], "model");
    assert_eq!(
        c["content"]["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": weather_args()}}])
    );
    assert_eq!(c["finishReason"], "STOP");
    let args_len = weather_args().to_string().len() as u64;
    assert_eq!(
        v["usageMetadata"]["candidatesTokenCount"],
        args_len.div_ceil(4) + 5
    );

    for mode in ["AUTO", "NONE"] {
        let v = post(
            GENERATE,
            &[],
            &with_function(request("weather?"), json!({"mode": mode})),
        )
        .await
        .json();
        assert!(
            v["candidates"][0]["content"]["parts"][0]["text"].is_string(),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn gemini_sse_chunks_carry_prompt_usage_and_the_last_finishes() {
    let body = request("tell me a story");
    let r = post(STREAM_SSE, &[("x-mock-chunks", "4")], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/event-stream");
    assert!(!r.text().contains("[DONE]"));
    let events = r.events();
    assert_eq!(events.len(), 4);
    let whole = post(GENERATE, &[], &body).await.json();
    let mut text = String::new();
    for (i, (name, chunk)) in events.iter().enumerate() {
        assert_eq!(*name, None);
        let c = &chunk["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        text.push_str(c["content"]["parts"][0]["text"].as_str().expect("text"));
        assert_eq!(chunk["usageMetadata"]["promptTokenCount"], 10);
        assert_eq!(chunk["modelVersion"], "gemini-2.0-flash");
        assert_eq!(chunk["responseId"], whole["responseId"]);
        let last = i == 3;
        assert_eq!(c.get("finishReason").is_some(), last);
        assert_eq!(
            chunk["usageMetadata"].get("candidatesTokenCount").is_some(),
            last
        );
    }
    assert_eq!(
        text,
        whole["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .expect("t")
    );
    let last = &events[3].1;
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"], whole["usageMetadata"]);
}

#[tokio::test]
async fn gemini_stream_without_alt_sse_is_a_json_array() {
    let body = request("tell me a story");
    let r = post(STREAM_ARRAY, &[("x-mock-chunks", "3")], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/json");
    let array = r.json();
    let sse: Vec<Value> = sse_events(
        post(STREAM_SSE, &[("x-mock-chunks", "3")], &body)
            .await
            .text(),
    )
    .into_iter()
    .map(|(_, d)| d)
    .collect();
    assert_eq!(array.as_array().expect("array").len(), 3);
    assert_eq!(array, Value::Array(sse));
}

#[tokio::test]
async fn gemini_streamed_function_call_arrives_whole() {
    let body = with_function(
        request("weather?"),
        json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    );
    let events = post(STREAM_SSE, &[("x-mock-chunks", "5")], &body)
        .await
        .events();
    assert_eq!(events.len(), 1);
    let c = &events[0].1["candidates"][0];
    assert_eq!(
        c["content"]["parts"][0]["functionCall"]["args"],
        weather_args()
    );
    assert_eq!(c["finishReason"], "STOP");
    let whole = post(GENERATE, &[], &body).await.json();
    assert_eq!(events[0].1, whole);
}

#[tokio::test]
async fn gemini_seed_uses_function_responses_when_the_turn_has_no_text() {
    let plain = post(GENERATE, &[], &request("sunny")).await.json();
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"content": "sunny"}}}]}
    ]});
    let v = post(GENERATE, &[], &body).await.json();
    assert_eq!(
        v["candidates"][0]["content"],
        plain["candidates"][0]["content"]
    );
}

#[tokio::test]
async fn gemini_cached_tokens_are_included_in_prompt_tokens() {
    let body = request("tell me a story");
    let u = post(GENERATE, &[("x-mock-cached-tokens", "6")], &body)
        .await
        .json()["usageMetadata"]
        .clone();
    assert_eq!(u["cachedContentTokenCount"], 6);
    assert_eq!(u["promptTokenCount"], 10);
    let events = post(STREAM_SSE, &[("x-mock-cached-tokens", "60")], &body)
        .await
        .events();
    for (_, e) in &events {
        assert_eq!(e["usageMetadata"]["cachedContentTokenCount"], 10);
    }
}

#[tokio::test]
async fn gemini_errors_use_google_status_names() {
    for (status, name) in [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ] {
        let s = status.to_string();
        let r = post(STREAM_SSE, &[("x-mock-status", &s)], &request("hi")).await;
        assert_eq!(r.status.as_u16(), status);
        assert_eq!(r.content_type(), "application/json");
        let e = r.json();
        assert_eq!(keys(&e), ["error"]);
        assert_eq!(keys(&e["error"]), ["code", "message", "status"]);
        assert_eq!(e["error"]["code"], status);
        assert_eq!(e["error"]["status"], name);
    }
    let r = post(GENERATE, &[], &json!({"generationConfig": {}})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
}
