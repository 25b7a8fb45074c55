//! Conformance of the Anthropic and Gemini adapters, and of the inbound Messages API, against
//! fixtures transcribed from each provider's documentation (`fixtures/README.md`). The expected
//! values live in `fixtures/dialects.json`, computed by hand from the fixtures.

use bytes::Bytes;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tollgate_config::load_str;
use tollgate_providers::{Adapter, ChatEvent, SseSplitter, StreamSignal, parse_messages_request};
use tollgate_types::{ClientApi, Usage};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(dialect: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir().join(dialect).join(file)).unwrap_or_else(|_| panic!("{dialect}/{file}"))
}

fn expected(dialect: &str, case: &str) -> Value {
    let all: Value =
        serde_json::from_slice(&std::fs::read(dir().join("dialects.json")).expect("dialects.json"))
            .expect("JSON");
    all[dialect][case].clone()
}

fn adapter(dialect: &str) -> Adapter {
    match dialect {
        "anthropic" => Adapter::Anthropic,
        "gemini" => Adapter::Gemini,
        _ => panic!("unknown dialect {dialect}"),
    }
}

fn usage_of(v: &Value) -> Usage {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("usage.{k}"));
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cached_input_tokens: n("cached_input_tokens"),
        cache_write_tokens: n("cache_write_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
    }
}

/// Anthropic's usage object has no reasoning count: thinking tokens are output tokens there.
fn without_reasoning(u: Usage) -> Usage {
    Usage {
        reasoning_tokens: 0,
        ..u
    }
}

/// What a client can see of an answer, whatever the dialect it arrived in.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    text: String,
    /// (id, name, arguments as JSON).
    tool_calls: Vec<(String, String, Value)>,
    finish_reason: String,
    usage: Option<Usage>,
}

impl Answer {
    fn check(&self, want: &Value, dialect: &str, case: &str) {
        assert_eq!(
            self.text,
            want["text"].as_str().unwrap_or_default(),
            "{dialect}/{case} text"
        );
        assert_eq!(
            self.finish_reason, want["finish_reason"],
            "{dialect}/{case} finish"
        );
        let calls = want["tool_calls"].as_array().expect("tool_calls");
        assert_eq!(self.tool_calls.len(), calls.len(), "{dialect}/{case} calls");
        for ((id, name, args), w) in self.tool_calls.iter().zip(calls) {
            assert_eq!(name, &w["name"], "{dialect}/{case}");
            assert_eq!(args, &w["arguments"], "{dialect}/{case}");
            if let Some(wid) = w.get("id").and_then(Value::as_str) {
                assert_eq!(id, wid, "{dialect}/{case}");
            }
            assert!(!id.is_empty(), "every tool call has an id");
        }
        assert_eq!(
            self.usage,
            Some(usage_of(&want["usage"])),
            "{dialect}/{case} usage"
        );
    }

    /// Reads an OpenAI `chat.completion`.
    fn from_completion(v: &Value) -> Answer {
        let m = &v["choices"][0]["message"];
        let tool_calls = m["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let args = c["function"]["arguments"]
                    .as_str()
                    .expect("string arguments");
                (
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["function"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    serde_json::from_str(args).expect("arguments are JSON"),
                )
            })
            .collect();
        Answer {
            text: m["content"].as_str().unwrap_or_default().to_owned(),
            tool_calls,
            finish_reason: v["choices"][0]["finish_reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            usage: tollgate_types::Usage::from_openai(&v["usage"]),
        }
    }

    /// Reads an OpenAI chunk stream, reassembling tool calls by index.
    fn from_openai_stream(bytes: &[u8]) -> Answer {
        let mut a = Answer::default();
        let mut args: Vec<String> = Vec::new();
        let mut done = false;
        for ev in SseSplitter::default().push(bytes) {
            assert!(!done, "nothing after [DONE]");
            if ev.data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data).expect("chunk JSON");
            assert_eq!(v["object"], "chat.completion.chunk");
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                a.usage = tollgate_types::Usage::from_openai(u);
            }
            let Some(choice) = v["choices"].get(0) else {
                continue;
            };
            if let Some(t) = choice["delta"]["content"].as_str() {
                a.text.push_str(t);
            }
            for c in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = c["index"].as_u64().expect("index") as usize;
                if let Some(name) = c["function"]["name"].as_str() {
                    assert_eq!(i, a.tool_calls.len(), "indexes are stable and dense");
                    a.tool_calls.push((
                        c["id"].as_str().expect("id").to_owned(),
                        name.to_owned(),
                        Value::Null,
                    ));
                    args.push(String::new());
                }
                args[i].push_str(c["function"]["arguments"].as_str().unwrap_or_default());
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                a.finish_reason = f.to_owned();
            }
        }
        assert!(done, "the stream ends with [DONE]");
        for (call, json) in a.tool_calls.iter_mut().zip(args) {
            call.2 = serde_json::from_str(&json).expect("reassembled arguments are JSON");
        }
        a
    }

    /// Reads an Anthropic event stream, checking its grammar as the SDK expects it.
    fn from_anthropic_stream(bytes: &[u8]) -> Answer {
        let mut a = Answer::default();
        let mut names = Vec::new();
        let mut open: Option<u64> = None;
        let mut inputs: Vec<(u64, String)> = Vec::new();
        let mut usage = serde_json::Map::new();
        let merge = |into: &mut serde_json::Map<String, Value>, from: &Value| {
            for (k, v) in from.as_object().into_iter().flatten() {
                if v.is_number() {
                    into.insert(k.clone(), v.clone());
                }
            }
        };
        for ev in SseSplitter::default().push(bytes) {
            let v: Value = serde_json::from_str(&ev.data).expect("event JSON");
            let name = ev.event.clone().expect("every event is named");
            assert_eq!(v["type"], name.as_str(), "event name matches its type");
            match name.as_str() {
                "message_start" => {
                    merge(&mut usage, &v["message"]["usage"]);
                    assert!(
                        v["message"]["id"]
                            .as_str()
                            .is_some_and(|i| i.starts_with("msg_"))
                    );
                }
                "content_block_start" => {
                    assert_eq!(open, None, "one block open at a time");
                    let i = v["index"].as_u64().expect("index");
                    open = Some(i);
                    let b = &v["content_block"];
                    if b["type"] == "tool_use" {
                        a.tool_calls.push((
                            b["id"].as_str().expect("id").to_owned(),
                            b["name"].as_str().expect("name").to_owned(),
                            Value::Null,
                        ));
                        inputs.push((i, String::new()));
                    }
                }
                "content_block_delta" => {
                    let i = v["index"].as_u64().expect("index");
                    assert_eq!(open, Some(i), "deltas go to the open block");
                    let d = &v["delta"];
                    match d["type"].as_str() {
                        Some("text_delta") => a.text.push_str(d["text"].as_str().expect("text")),
                        Some("input_json_delta") => {
                            let slot = inputs
                                .iter_mut()
                                .find(|(b, _)| *b == i)
                                .expect("tool block");
                            slot.1
                                .push_str(d["partial_json"].as_str().expect("partial_json"));
                        }
                        other => panic!("unexpected delta {other:?}"),
                    }
                }
                "content_block_stop" => {
                    assert_eq!(open.take(), v["index"].as_u64(), "stops the open block");
                }
                "message_delta" => {
                    a.finish_reason = v["delta"]["stop_reason"]
                        .as_str()
                        .expect("stop_reason")
                        .to_owned();
                    // As the SDK does: message_delta's counts update message_start's.
                    merge(&mut usage, &v["usage"]);
                    a.usage = Some(Usage::from_anthropic(&Value::Object(usage.clone())));
                }
                _ => {}
            }
            names.push(name);
        }
        assert_eq!(names.first().map(String::as_str), Some("message_start"));
        assert_eq!(names.last().map(String::as_str), Some("message_stop"));
        for (call, (_, json)) in a.tool_calls.iter_mut().zip(inputs) {
            call.2 = serde_json::from_str(&json).expect("reassembled input is JSON");
        }
        // Back to OpenAI's vocabulary, to compare with dialects.json.
        a.finish_reason = match a.finish_reason.as_str() {
            "end_turn" | "stop_sequence" => "stop",
            "max_tokens" => "length",
            "tool_use" => "tool_calls",
            "refusal" => "content_filter",
            other => panic!("unknown stop_reason {other}"),
        }
        .to_owned();
        a
    }
}

fn transcode(
    adapter: Adapter,
    client: ClientApi,
    raw: &[u8],
    slice: usize,
) -> (Vec<u8>, Vec<StreamSignal>) {
    let mut t = adapter.stream_transcoder(client, true);
    let mut bytes = Vec::new();
    let mut signals = Vec::new();
    for c in raw.chunks(slice.max(1)) {
        let out = t.push(&Bytes::copy_from_slice(c));
        bytes.extend_from_slice(&out.bytes);
        signals.extend(out.signals);
    }
    let out = t.finish();
    bytes.extend_from_slice(&out.bytes);
    signals.extend(out.signals);
    (bytes, signals)
}

fn check_responses(dialect: &str, cases: &[&str]) {
    for case in cases {
        let body = Bytes::from(read(dialect, &format!("{case}.json")));
        let want = expected(dialect, case);
        let t = adapter(dialect)
            .translate_response(ClientApi::OpenAi, body.clone())
            .expect("translate");
        assert_eq!(t.usage, Some(usage_of(&want["usage"])), "{dialect}/{case}");
        let v: Value = serde_json::from_slice(&t.body).expect("OpenAI JSON");
        assert_eq!(v["object"], "chat.completion");
        Answer::from_completion(&v).check(&want, dialect, case);
        // The same answer through the Messages API keeps content, tool calls and cache counts.
        let t = adapter(dialect)
            .translate_response(ClientApi::Anthropic, body)
            .expect("translate");
        let m: Value = serde_json::from_slice(&t.body).expect("Messages JSON");
        assert_eq!(m["type"], "message");
        assert_eq!(
            Some(Usage::from_anthropic(&m["usage"])),
            t.usage.map(without_reasoning),
            "{dialect}/{case}"
        );
        let tool_uses: Vec<&Value> = m["content"]
            .as_array()
            .expect("content")
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .collect();
        assert_eq!(
            tool_uses.len(),
            want["tool_calls"].as_array().map_or(0, Vec::len)
        );
        for (b, w) in tool_uses
            .iter()
            .zip(want["tool_calls"].as_array().into_iter().flatten())
        {
            assert_eq!(b["input"], w["arguments"], "input is an object again");
        }
    }
}

fn check_streams(dialect: &str, cases: &[&str]) {
    for case in cases {
        let raw = read(dialect, &format!("{case}.sse"));
        let want = expected(dialect, case);
        for slice in [1usize, 3, 17, 256, raw.len()] {
            let (bytes, signals) = transcode(adapter(dialect), ClientApi::OpenAi, &raw, slice);
            Answer::from_openai_stream(&bytes).check(&want, dialect, case);
            assert_eq!(
                signals
                    .iter()
                    .filter(|s| **s == StreamSignal::FirstToken)
                    .count(),
                1,
                "{dialect}/{case} slice {slice}"
            );
            assert_eq!(
                signals.iter().rev().find_map(|s| match s {
                    StreamSignal::Usage(u) => Some(*u),
                    _ => None,
                }),
                Some(usage_of(&want["usage"])),
                "usage reaches accounting even when the client did not ask for it"
            );
            assert!(signals.contains(&StreamSignal::Done));
            let (bytes, _) = transcode(adapter(dialect), ClientApi::Anthropic, &raw, slice);
            let mut want = want.clone();
            want["usage"]["reasoning_tokens"] = json!(0); // Anthropic usage has no such field
            Answer::from_anthropic_stream(&bytes).check(&want, dialect, case);
        }
    }
}

fn check_errors(dialect: &str) {
    let want = expected(dialect, "errors");
    for (file, w) in want.as_object().expect("errors") {
        let status = w["status"].as_u64().expect("status") as u16;
        let e = adapter(dialect).classify_error(status, &read(dialect, file));
        assert_eq!(
            e.provider_type.as_deref(),
            w["type"].as_str(),
            "{dialect}/{file}"
        );
        assert_eq!(e.retryable(), w["retryable"], "{dialect}/{file}: {e:?}");
        assert!(!e.message.is_empty(), "{dialect}/{file} message read");
    }
}

#[test]
fn anthropic_responses() {
    check_responses("anthropic", &["chat_response", "chat_response_tool_use"]);
}

#[test]
fn anthropic_streams() {
    check_streams("anthropic", &["chat_stream", "chat_stream_tool_use"]);
}

#[test]
fn anthropic_errors() {
    check_errors("anthropic");
}

#[test]
fn anthropic_stream_error_is_reported() {
    let raw = read("anthropic", "stream_error.sse");
    let want = expected("anthropic", "stream_error");
    let (bytes, signals) = transcode(Adapter::Anthropic, ClientApi::OpenAi, &raw, 5);
    let kind = want["error_type"].as_str().expect("error_type");
    assert!(
        signals
            .iter()
            .any(|s| matches!(s, StreamSignal::Error(e) if e.contains(kind))),
        "{signals:?}"
    );
    let text = String::from_utf8(bytes).expect("utf8");
    assert!(
        text.contains(&format!("\"type\":\"{kind}\"")),
        "the client sees the error: {text}"
    );
}

#[test]
fn gemini_responses() {
    check_responses("gemini", &["chat_response", "chat_response_function_call"]);
}

#[test]
fn gemini_streams() {
    check_streams("gemini", &["chat_stream", "chat_stream_function_call"]);
}

#[test]
fn gemini_errors() {
    check_errors("gemini");
}

fn provider(kind: &str) -> tollgate_config::ProviderConfig {
    let env = |name: &str| (name == "KEY").then(|| "secret-key".to_owned());
    let text = format!("[providers.p]\nkind = \"{kind}\"\napi_key_env = \"KEY\"\n");
    load_str(&text, Path::new("t.toml"), &env)
        .expect("config")
        .providers["p"]
        .clone()
}

fn header<'a>(req: &'a tollgate_providers::UpstreamRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The documented Messages request survives Messages → canonical → Messages.
#[test]
fn anthropic_request_round_trips_through_the_canonical_form() {
    let original: Value =
        serde_json::from_slice(&read("anthropic", "request_tools.json")).expect("json");
    let canonical =
        parse_messages_request(&read("anthropic", "request_tools.json")).expect("parse");
    let p = provider("anthropic");
    let up = Adapter::Anthropic
        .chat_request(&p, &canonical, "claude-x")
        .expect("build");
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(header(&up, "x-api-key"), Some("secret-key"));
    assert_eq!(header(&up, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(header(&up, "authorization"), None);
    let built: Value = serde_json::from_slice(&up.body).expect("json");
    assert_eq!(built["model"], "claude-x");
    for key in ["max_tokens", "system", "messages", "tools", "tool_choice"] {
        assert_eq!(built[key], original[key], "{key} survives the round trip");
    }
}

/// A canonical conversation with a tool round trip becomes documented Gemini `contents`.
#[test]
fn gemini_request_has_the_documented_shape() {
    let canonical =
        parse_messages_request(&read("anthropic", "request_tools.json")).expect("parse");
    let p = provider("gemini");
    let up = Adapter::Gemini
        .chat_request(&p, &canonical, "gemini-2.5-flash")
        .expect("build");
    assert_eq!(up.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(header(&up, "x-goog-api-key"), Some("secret-key"));
    let built: Value = serde_json::from_slice(&up.body).expect("json");
    let documented: Value =
        serde_json::from_slice(&read("gemini", "request_tools.json")).expect("json");
    for key in built.as_object().expect("object").keys() {
        assert!(
            documented.get(key).is_some(),
            "`{key}` is a documented field"
        );
    }
    let contents = built["contents"].as_array().expect("contents");
    for pair in contents.windows(2) {
        assert_ne!(pair[0]["role"], pair[1]["role"], "roles alternate");
    }
    let calls: Vec<&Value> = contents
        .iter()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .filter_map(|p| p.get("functionCall"))
        .collect();
    let responses: Vec<&Value> = contents
        .iter()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .filter_map(|p| p.get("functionResponse"))
        .collect();
    assert!(!calls.is_empty() && calls.len() == responses.len());
    for (c, r) in calls.iter().zip(&responses) {
        assert_eq!(c["name"], r["name"], "a response is named after its call");
        assert!(c["args"].is_object() && r["response"].is_object());
    }
    assert!(built["systemInstruction"]["parts"][0]["text"].is_string());
    assert!(built["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"].is_object());
    assert_eq!(built["generationConfig"]["maxOutputTokens"], 1024);
}

/// A streamed Gemini function call keeps its thought signature through an OpenAI client.
#[test]
fn gemini_thought_signatures_survive_the_tool_round_trip() {
    let raw = br#"data: {"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"c2lnbmF0dXJlKz8/"}],"role":"model"},"finishReason":"STOP","index":0}]}

"#;
    let (bytes, _) = transcode(Adapter::Gemini, ClientApi::OpenAi, raw, raw.len());
    let answer = Answer::from_openai_stream(&bytes);
    let id = answer.tool_calls[0].0.clone();
    let req: tollgate_types::ChatRequest =
        serde_json::from_value(json!({"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "{\"ok\":true}"}]}))
        .expect("req");
    let up = Adapter::Gemini
        .chat_request(&provider("gemini"), &req, "g")
        .expect("build");
    let v: Value = serde_json::from_slice(&up.body).expect("json");
    assert_eq!(
        v["contents"][1]["parts"][0]["thoughtSignature"],
        "c2lnbmF0dXJlKz8/"
    );
    assert_eq!(
        v["contents"][2]["parts"][0]["functionResponse"]["name"],
        "f"
    );
    assert_eq!(
        v["contents"][2]["parts"][0]["functionResponse"]["response"],
        json!({"ok": true})
    );
    // The same conversation to Anthropic and OpenAI: plain, valid ids.
    let up = Adapter::Anthropic
        .chat_request(&provider("anthropic"), &req, "c")
        .expect("build");
    let w: Value = serde_json::from_slice(&up.body).expect("json");
    let tool_id = w["messages"][1]["content"][0]["id"]
        .as_str()
        .expect("tool_use id");
    assert!(
        tool_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    assert!(!tool_id.contains("sig"), "{tool_id}");
    assert_eq!(w["messages"][2]["content"][0]["tool_use_id"], tool_id);
    let up = Adapter::for_kind(tollgate_config::ProviderKind::OpenAi)
        .chat_request(&provider("openai"), &req, "gpt")
        .expect("build");
    let w: Value = serde_json::from_slice(&up.body).expect("json");
    let openai_id = w["messages"][1]["tool_calls"][0]["id"]
        .as_str()
        .expect("id");
    assert_eq!(openai_id, tool_id);
    assert!(openai_id.len() <= 40);
    assert_eq!(w["messages"][2]["tool_call_id"], openai_id);
}

/// A tiny deterministic PRNG, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

fn events(adapter: Adapter, chunks: &[&[u8]]) -> Vec<ChatEvent> {
    let mut d = adapter.event_decoder();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, &mut out);
    }
    d.finish(&mut out);
    out
}

/// Streams with multi-byte text: every dialect, CRLF and LF framing.
fn multibyte_streams() -> Vec<(Adapter, Vec<u8>)> {
    let openai = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
        data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}llo \u{1f680} \u{65e5}\u{672c}\u{8a9e}\"}}]}\n\n\
        data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"city\\\":\\\"M\u{fc}n\"}}]}}]}\n\n\
        data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"chen \u{1f37a}\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
        data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n\
        data: [DONE]\n\n";
    let anthropic = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\r\n\r\n\
        event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n\
        event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\u{c7}a va? \u{1f600}\u{4e2d}\u{6587}\"}}\r\n\r\n\
        event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\r\n\r\n\
        event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";
    let gemini = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\u{3053}\u{3093}\u{306b}\u{3061}\u{306f} \u{1f30d}\"}],\"role\":\"model\"},\"index\":0}],\"responseId\":\"r\"}\r\n\r\n\
        data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" \u{fc}ber\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,\"totalTokenCount\":5}}\r\n\r\n";
    vec![
        (
            Adapter::for_kind(tollgate_config::ProviderKind::OpenAi),
            openai.as_bytes().to_vec(),
        ),
        (Adapter::Anthropic, anthropic.as_bytes().to_vec()),
        (Adapter::Gemini, gemini.as_bytes().to_vec()),
        (
            Adapter::Anthropic,
            read("anthropic", "chat_stream_tool_use.sse"),
        ),
        (Adapter::Gemini, read("gemini", "chat_stream.sse")),
    ]
}

/// Property: however a stream is cut into chunks (mid-line, mid-UTF-8 sequence, mid-CRLF), the
/// decoders produce the same canonical events, and the transcoders the same bytes, as for the
/// unsplit stream.
#[test]
fn sse_decoding_is_independent_of_chunk_boundaries() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for (adapter, raw) in multibyte_streams() {
        let whole = events(adapter, &[&raw]);
        if !raw.is_ascii() {
            let non_ascii = |e: &ChatEvent| matches!(e, ChatEvent::Text(t) | ChatEvent::ToolArgs { json: t, .. } if !t.is_ascii());
            assert!(
                whole.iter().any(non_ascii),
                "{adapter:?}: multi-byte text decoded"
            );
        }
        assert_eq!(whole.last(), Some(&ChatEvent::Done));
        let (whole_bytes, _) = transcode(adapter, ClientApi::Anthropic, &raw, raw.len());
        // Every single cut point, including inside each multi-byte character.
        for cut in 1..raw.len() {
            let (a, b) = raw.split_at(cut);
            assert_eq!(events(adapter, &[a, b]), whole, "{adapter:?} cut at {cut}");
        }
        // Many random cuts at once.
        for _ in 0..200 {
            let mut cuts: Vec<usize> = (0..1 + rng.next(12)).map(|_| rng.next(raw.len())).collect();
            cuts.push(0);
            cuts.push(raw.len());
            cuts.sort_unstable();
            cuts.dedup();
            let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &raw[w[0]..w[1]]).collect();
            assert_eq!(events(adapter, &pieces), whole, "{adapter:?} cuts {cuts:?}");
        }
        let (bytes, _) = transcode(adapter, ClientApi::Anthropic, &raw, 1);
        assert_eq!(
            bytes, whole_bytes,
            "{adapter:?}: byte-at-a-time output is identical"
        );
    }
}

/// A thinking model's first token is its first thought: the stream counts as started (no TTFT
/// failover while it thinks), and OpenAI clients see the thinking as `reasoning_content`.
#[test]
fn thinking_counts_as_the_first_token_and_reaches_openai_clients() {
    let raw = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me see.\"}}\n\n";
    let mut t = Adapter::Anthropic.stream_transcoder(ClientApi::OpenAi, false);
    let out = t.push(&Bytes::from_static(raw));
    assert!(
        out.signals.contains(&StreamSignal::FirstToken),
        "{:?}",
        out.signals
    );
    let text = String::from_utf8(out.bytes.to_vec()).expect("utf8");
    assert!(
        text.contains("\"reasoning_content\":\"Let me see.\""),
        "{text}"
    );
    // The same from an OpenAI-compatible reasoning stream, passed through.
    let mut obs = Adapter::for_kind(tollgate_config::ProviderKind::DeepSeek).stream_observer();
    let chunk = Bytes::from_static(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"reasoning_content\":\"Hmm\"}}]}\n\n",
    );
    assert_eq!(
        obs.observe(&chunk),
        vec![StreamSignal::FirstToken, StreamSignal::Generated(3)]
    );
}
