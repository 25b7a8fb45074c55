//! The three formats side by side: same answer, same usage, same faults; routing.

use super::{Reply, call, call_with, post, weather_args, weather_schema};
use crate::MockConfig;
use http::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const GENERATE: &str = "/v1beta/models/g:generateContent";
const STREAM_SSE: &str = "/v1beta/models/g:streamGenerateContent?alt=sse";

fn openai(prompt: &str, max: Option<u32>) -> Value {
    let mut b = json!({"model": "m", "messages": [{"role": "system", "content": "be brief"},
        {"role": "user", "content": prompt}]});
    if let Some(m) = max {
        b["max_tokens"] = m.into();
    }
    b
}

fn anthropic(prompt: &str, max: Option<u32>) -> Value {
    json!({"model": "m", "max_tokens": max.unwrap_or(4096), "system": "be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]})
}

fn gemini(prompt: &str, max: Option<u32>) -> Value {
    let mut b = json!({"systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": prompt}]}]});
    if let Some(m) = max {
        b["generationConfig"] = json!({"maxOutputTokens": m});
    }
    b
}

/// (text, prompt tokens, completion tokens, finish) from each format's JSON answer.
async fn answers(prompt: &str, max: Option<u32>) -> [(String, u64, u64, String); 3] {
    let o = post(CHAT, &[], &openai(prompt, max)).await.json();
    let a = post(MESSAGES, &[], &anthropic(prompt, max)).await.json();
    let g = post(GENERATE, &[], &gemini(prompt, max)).await.json();
    let s = |v: &Value| v.as_str().expect("str").to_owned();
    let n = |v: &Value| v.as_u64().expect("u64");
    [
        (
            s(&o["choices"][0]["message"]["content"]),
            n(&o["usage"]["prompt_tokens"]),
            n(&o["usage"]["completion_tokens"]),
            s(&o["choices"][0]["finish_reason"]),
        ),
        (
            s(&a["content"][0]["text"]),
            n(&a["usage"]["input_tokens"]),
            n(&a["usage"]["output_tokens"]),
            s(&a["stop_reason"]),
        ),
        (
            s(&g["candidates"][0]["content"]["parts"][0]["text"]),
            n(&g["usageMetadata"]["promptTokenCount"]),
            n(&g["usageMetadata"]["candidatesTokenCount"]),
            s(&g["candidates"][0]["finishReason"]),
        ),
    ]
}

#[tokio::test]
async fn same_prompt_same_answer_and_usage_in_every_format() {
    for prompt in ["tell me a story", "what is a gateway?", ""] {
        let [o, a, g] = answers(prompt, None).await;
        assert_eq!((&o.0, o.1, o.2), (&a.0, a.1, a.2), "{prompt:?}");
        assert_eq!((&o.0, o.1, o.2), (&g.0, g.1, g.2), "{prompt:?}");
        assert_eq!(
            (o.3.as_str(), a.3.as_str(), g.3.as_str()),
            ("stop", "end_turn", "STOP")
        );
        assert_eq!(o.2, crate::text::answer_tokens(prompt, None).0.len() as u64);
    }
    let [o, a, g] = answers("tell me a story", Some(6)).await;
    assert_eq!(o.0, a.0);
    assert_eq!(o.0, g.0);
    assert_eq!((o.2, a.2, g.2), (6, 6, 6));
    assert_eq!(
        (o.3.as_str(), a.3.as_str(), g.3.as_str()),
        ("length", "max_tokens", "MAX_TOKENS")
    );
}

#[tokio::test]
async fn streamed_text_matches_across_formats() {
    let prompt = "stream this please";
    let hdr = [("x-mock-chunks", "5")];
    let mut o = openai(prompt, None);
    o["stream"] = true.into();
    let openai_text: String = post(CHAT, &hdr, &o)
        .await
        .text()
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            let v: Value = serde_json::from_str(d).expect("json");
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let mut a = anthropic(prompt, None);
    a["stream"] = true.into();
    let anthropic_text: String = post(MESSAGES, &hdr, &a)
        .await
        .events()
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    let gemini_text: String = post(STREAM_SSE, &hdr, &gemini(prompt, None))
        .await
        .events()
        .iter()
        .filter_map(|(_, d)| {
            d["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(openai_text.starts_with("Mock answer:"));
    assert_eq!(openai_text, anthropic_text);
    assert_eq!(openai_text, gemini_text);
}

#[tokio::test]
async fn same_tool_arguments_in_every_format() {
    let mut o = openai("weather?", None);
    o["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": weather_schema(false)}}]);
    o["tool_choice"] = "required".into();
    let mut a = anthropic("weather?", None);
    a["tools"] = json!([{"name": "get_weather", "input_schema": weather_schema(false)}]);
    a["tool_choice"] = json!({"type": "any"});
    let mut g = gemini("weather?", None);
    g["tools"] = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": weather_schema(false)}]}]);
    g["toolConfig"] = json!({"functionCallingConfig": {"mode": "ANY"}});
    let o = post(CHAT, &[], &o).await.json();
    let a = post(MESSAGES, &[], &a).await.json();
    let g = post(GENERATE, &[], &g).await.json();
    let args: Value = serde_json::from_str(
        o["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .expect("args"),
    )
    .expect("JSON");
    assert_eq!(args, weather_args());
    assert_eq!(a["content"][0]["input"], args);
    assert_eq!(
        g["candidates"][0]["content"]["parts"][0]["functionCall"]["args"],
        args
    );
    let n = o["usage"]["completion_tokens"].clone();
    assert_eq!(a["usage"]["output_tokens"], n);
    assert_eq!(g["usageMetadata"]["candidatesTokenCount"], n);
}

/// A streaming request to each route.
fn streams() -> [(&'static str, Value); 3] {
    let mut o = openai("hi", None);
    o["stream"] = true.into();
    let mut a = anthropic("hi", None);
    a["stream"] = true.into();
    [(CHAT, o), (MESSAGES, a), (STREAM_SSE, gemini("hi", None))]
}

#[tokio::test]
async fn reset_after_cuts_every_stream() {
    for (uri, body) in streams() {
        let r = post(uri, &[("x-mock-reset-after", "2")], &body).await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_err(), "{uri}: stream should be cut");
        let whole = post(uri, &[("x-mock-reset-after", "100")], &body).await;
        assert!(whole.body.is_ok(), "{uri}");
    }
}

#[tokio::test]
async fn malformed_bodies_in_every_format() {
    for (uri, body) in streams() {
        let r = post(uri, &[("x-mock-malformed", "1")], &body).await;
        assert_eq!(r.status, 200, "{uri}");
        assert_eq!(r.content_type(), "application/json");
        assert!(serde_json::from_str::<Value>(r.text()).is_err(), "{uri}");
    }
}

#[tokio::test]
async fn ttft_and_chunk_delay_pace_every_stream() {
    let config = MockConfig {
        ttft: Duration::from_millis(30),
        ..MockConfig::default()
    };
    for (uri, body) in streams() {
        let t = Instant::now();
        let hdr = [("x-mock-chunks", "4"), ("x-mock-chunk-delay-ms", "20")];
        let r: Reply = call_with(Method::POST, uri, &hdr, &body, &config).await;
        assert!(r.body.is_ok());
        // 30 ms to the first chunk, then at least three 20 ms gaps between content chunks.
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(90), "{uri}: {took:?}");
    }
}

#[tokio::test]
async fn injected_overload_in_each_format() {
    let [(_, o), (_, a), (_, g)] = streams();
    let o = post(CHAT, &[("x-mock-status", "529")], &o).await;
    assert_eq!(o.status.as_u16(), 529);
    assert_eq!(o.json()["error"]["type"], "server_error");
    let a = post(MESSAGES, &[("x-mock-status", "529")], &a).await;
    assert_eq!(a.status.as_u16(), 529);
    assert_eq!(
        a.json(),
        json!({"type": "error", "error": {"type": "overloaded_error",
        "message": "mock: injected status 529"}})
    );
    let g = post(STREAM_SSE, &[("x-mock-status", "503")], &g).await;
    assert_eq!(g.status.as_u16(), 503);
    assert_eq!(
        g.json(),
        json!({"error": {"code": 503, "message": "mock: injected status 503",
        "status": "UNAVAILABLE"}})
    );
    // A zero fault rate never injects.
    let r = post(
        MESSAGES,
        &[("x-mock-status", "529"), ("x-mock-fault-rate", "0")],
        &anthropic("hi", None),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn routes_and_unknown_paths() {
    let a = anthropic("hi", None);
    assert_eq!(post("/messages", &[], &a).await.status, 200);
    assert_eq!(
        post("/v1/models/g:generateContent", &[], &gemini("hi", None))
            .await
            .status,
        200
    );
    assert_eq!(
        call(Method::GET, "/v1/models", &[], &Value::Null)
            .await
            .status,
        200
    );
    for (method, uri) in [
        (Method::GET, MESSAGES),
        (Method::GET, GENERATE),
        (Method::POST, "/v1/messages/batches"),
        (Method::POST, "/v1beta/models/g:embedContent"),
        (Method::POST, "/v1/responses"),
    ] {
        let r = call(method.clone(), uri, &[], &a).await;
        assert_eq!(r.status, 404, "{method} {uri}");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .expect("msg")
                .contains("no route")
        );
    }
}

/// The whole server over TCP: a request line, headers and a JSON reply.
#[tokio::test]
async fn served_over_tcp() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let handle = crate::spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("spawn");
    let body = gemini("tell me a story", None).to_string();
    let mut sock = tokio::net::TcpStream::connect(handle.addr)
        .await
        .expect("connect");
    let req = format!(
        "POST /v1beta/models/gemini%2D2.0-flash:streamGenerateContent?alt=sse HTTP/1.1\r\n\
         host: mock\r\ncontent-type: application/json\r\nx-goog-api-key: k\r\n\
         x-mock-chunks: 2\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    sock.read_to_string(&mut raw).await.expect("read");
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: text/event-stream")
    );
    assert!(raw.contains("\"modelVersion\":\"gemini-2.0-flash\""));
    assert_eq!(handle.stats.requests(), 1);
    assert_eq!(handle.stats.last_body_bytes(), body.len() as u64);
}
