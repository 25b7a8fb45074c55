//! The adapter conformance suite: every OpenAI-family provider preset runs the same checks
//! against fixtures transcribed from that provider's API reference (see `fixtures/README.md`).
//!
//! Each `conformance!` line expands to one module of tests for one provider.

use bytes::Bytes;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tollgate_config::{ProviderConfig, load_str};
use tollgate_providers::{Adapter, Disposition, StreamSignal, classify_status};
use tollgate_types::{ChatRequest, EmbeddingsRequest, Usage};

const SECRET: &str = "sk-conformance-secret";

fn fixtures(provider: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(provider)
}

fn read(provider: &str, file: &str) -> Option<Vec<u8>> {
    std::fs::read(fixtures(provider).join(file)).ok()
}

fn expected(provider: &str, which: &str) -> Usage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/expected.json");
    let all: Value =
        serde_json::from_slice(&std::fs::read(path).expect("expected.json")).expect("JSON");
    let e = &all[provider][which];
    let n = |k: &str| {
        e[k].as_u64()
            .unwrap_or_else(|| panic!("{provider}.{which}.{k} in expected.json"))
    };
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cached_input_tokens: n("cached_input_tokens"),
        cache_write_tokens: 0,
        reasoning_tokens: n("reasoning_tokens"),
    }
}

/// A provider of `kind` as a user would configure it, with its key in the environment.
fn provider(kind: &str) -> ProviderConfig {
    let base_url = match kind {
        "azure" => "base_url = \"https://my-resource.openai.azure.com\"\n",
        "openai_compatible" => "base_url = \"https://llm.example.com:8443/v1\"\n",
        _ => "",
    };
    let text = format!(
        "[providers.p]\nkind = \"{kind}\"\napi_key_env = \"CONFORMANCE_KEY\"\n{base_url}\
         headers = {{ \"x-team\" = \"blue\" }}\n"
    );
    let env = |name: &str| (name == "CONFORMANCE_KEY").then(|| SECRET.to_owned());
    let config = load_str(&text, Path::new("conformance.toml"), &env).expect("config");
    config.providers["p"].clone()
}

fn header<'a>(req: &'a tollgate_providers::UpstreamRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Builds a chat request and checks URL, headers and body.
fn check_chat_request(kind: &str) {
    let p = provider(kind);
    let adapter = Adapter::for_kind(p.kind);
    let req: ChatRequest = serde_json::from_value(json!({
        "model": "public-alias", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "seed": 7, "response_format": {"type": "json_object"}
    }))
    .expect("request");
    let up = adapter
        .chat_request(&p, &req, "upstream-model")
        .expect("build");
    let expected_path = if kind == "azure" {
        "/openai/deployments/upstream-model/chat/completions?api-version=2024-10-21".to_owned()
    } else {
        format!("{}/chat/completions", p.base_url.path)
    };
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, expected_path);
    assert_eq!(header(&up, "host"), Some(p.base_url.authority().as_str()));
    assert_eq!(header(&up, "accept"), Some("text/event-stream"));
    assert_eq!(
        header(&up, "content-length"),
        Some(up.body.len().to_string().as_str())
    );
    assert_eq!(
        header(&up, "x-team"),
        Some("blue"),
        "configured headers are sent"
    );
    if kind == "azure" {
        assert_eq!(header(&up, "api-key"), Some(SECRET));
        assert_eq!(header(&up, "authorization"), None);
    } else {
        assert_eq!(
            header(&up, "authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
    }
    let body: Value = serde_json::from_slice(&up.body).expect("body is JSON");
    assert_eq!(body["model"], "upstream-model");
    assert_eq!(body["messages"][1]["content"], "Hi");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["seed"], 7, "unknown fields pass through");
    assert_eq!(body["tools"][0]["function"]["name"], "f");
    assert_eq!(body["response_format"]["type"], "json_object");

    let emb: EmbeddingsRequest =
        serde_json::from_value(json!({"model": "a", "input": ["x", "y"], "dimensions": 8}))
            .expect("emb");
    let up = adapter
        .embeddings_request(&p, &emb, "embed-model")
        .expect("build");
    assert!(up.path.contains("/embeddings"), "{}", up.path);
    let body: Value = serde_json::from_slice(&up.body).expect("json");
    assert_eq!(body["model"], "embed-model");
    assert_eq!(body["dimensions"], 8);
    assert!(
        !format!("{p:?}").contains(SECRET),
        "Debug output never shows the key"
    );
}

/// Parses the documented non-streamed response and its usage.
fn check_chat_response(kind: &str, dir: &str) {
    let adapter = Adapter::for_kind(provider(kind).kind);
    let body = read(dir, "chat_response.json").expect("chat_response.json");
    let info = adapter.parse_response(&body).expect("parse");
    assert_eq!(info.usage, Some(expected(dir, "chat_response")));
    if let Some(body) = read(dir, "embeddings_response.json") {
        // Together documents no usage on embeddings; where usage is present it must be read.
        let info = adapter.parse_response(&body).expect("parse embeddings");
        let has_usage = serde_json::from_slice::<Value>(&body)
            .expect("json")
            .get("usage")
            .is_some();
        assert_eq!(
            info.usage.is_some_and(|u| u.input_tokens > 0),
            has_usage,
            "{dir}"
        );
    }
}

/// Feeds the documented stream in awkward slices and checks what the observer reports.
fn check_stream(kind: &str, dir: &str) {
    let adapter = Adapter::for_kind(provider(kind).kind);
    let raw = read(dir, "chat_stream.sse").expect("chat_stream.sse");
    for slice in [1usize, 7, 64, raw.len()] {
        let mut obs = adapter.stream_observer();
        let signals: Vec<StreamSignal> = raw
            .chunks(slice)
            .flat_map(|c| obs.observe(&Bytes::copy_from_slice(c)))
            .collect();
        let first_tokens = signals
            .iter()
            .filter(|s| **s == StreamSignal::FirstToken)
            .count();
        assert_eq!(first_tokens, 1, "slice {slice}: {signals:?}");
        assert_eq!(signals.last(), Some(&StreamSignal::Done), "slice {slice}");
        let usage = signals.iter().find_map(|s| match s {
            StreamSignal::Usage(u) => Some(*u),
            _ => None,
        });
        assert_eq!(usage, Some(expected(dir, "chat_stream")), "slice {slice}");
    }
}

/// Error fixtures are error-shaped, and their statuses map to the right disposition.
fn check_errors(dir: &str) {
    for (file, status, want) in [
        ("error_429.json", 429, Disposition::Failover),
        ("error_400.json", 400, Disposition::ClientError),
    ] {
        let body: Value = serde_json::from_slice(&read(dir, file).expect(file)).expect("json");
        assert!(
            body.get("error").is_some() || body.get("message").is_some(),
            "{dir}/{file}"
        );
        assert_eq!(classify_status(status), want);
    }
}

macro_rules! conformance {
    ($module:ident, $kind:literal, $dir:literal) => {
        mod $module {
            #[test]
            fn builds_chat_and_embeddings_requests() {
                super::check_chat_request($kind);
            }
            #[test]
            fn reads_usage_from_documented_responses() {
                super::check_chat_response($kind, $dir);
            }
            #[test]
            fn observes_documented_streams() {
                super::check_stream($kind, $dir);
            }
            #[test]
            fn classifies_documented_errors() {
                super::check_errors($dir);
            }
        }
    };
}

conformance!(openai, "openai", "openai");
conformance!(azure, "azure", "azure");
conformance!(mistral, "mistral", "mistral");
conformance!(deepseek, "deepseek", "deepseek");
conformance!(groq, "groq", "groq");
conformance!(together, "together", "together");
conformance!(fireworks, "fireworks", "fireworks");
conformance!(openrouter, "openrouter", "openrouter");
conformance!(ollama, "ollama", "ollama");
conformance!(vllm, "vllm", "vllm");
conformance!(llamacpp, "llamacpp", "llamacpp");
conformance!(openai_compatible, "openai_compatible", "vllm");

/// A tool call streamed across many deltas reassembles into valid JSON arguments.
#[test]
fn streamed_tool_call_arguments_reassemble() {
    let raw = read("openai", "chat_stream_tool_call.sse").expect("fixture");
    let mut splitter = tollgate_providers::SseSplitter::default();
    let mut args = String::new();
    let mut deltas = 0;
    for ev in raw.chunks(5).flat_map(|c| splitter.push(c)) {
        if ev.data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).expect("event JSON");
        let piece = v.pointer("/choices/0/delta/tool_calls/0/function/arguments");
        if let Some(a) = piece.and_then(Value::as_str) {
            args.push_str(a);
            deltas += 1;
        }
    }
    assert!(deltas >= 4, "arguments split across {deltas} deltas");
    let parsed: Value = serde_json::from_str(&args).expect("reassembled arguments are JSON");
    assert!(parsed.is_object());
    let mut obs = Adapter::for_kind(tollgate_config::ProviderKind::OpenAi).stream_observer();
    let signals = obs.observe(&Bytes::from(raw));
    assert!(
        signals.contains(&StreamSignal::FirstToken),
        "a tool-call delta counts as the first token"
    );
}

/// Parallel tool calls in a documented response keep JSON-string arguments.
#[test]
fn parallel_tool_calls_parse() {
    let body = read("openai", "chat_response_tool_calls.json").expect("fixture");
    let v: Value = serde_json::from_slice(&body).expect("json");
    let calls = v
        .pointer("/choices/0/message/tool_calls")
        .and_then(Value::as_array)
        .expect("tool_calls");
    assert!(calls.len() >= 2);
    for c in calls {
        let args = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .expect("string arguments");
        serde_json::from_str::<Value>(args).expect("arguments are JSON");
    }
    let adapter = Adapter::for_kind(tollgate_config::ProviderKind::OpenAi);
    assert!(adapter.parse_response(&body).is_ok());
}
