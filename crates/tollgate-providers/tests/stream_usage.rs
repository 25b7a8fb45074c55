//! Streamed requests are always priced: the gateway asks OpenAI-format providers for the usage
//! chunk, and a client that did not ask for it never sees it.

use bytes::Bytes;
use serde_json::{Value, json};
use std::path::Path;
use tollgate_config::{ProviderConfig, load_str};
use tollgate_providers::{Adapter, StreamSignal};
use tollgate_types::{ChatRequest, ClientApi};

fn provider(kind: &str, extra: &str) -> ProviderConfig {
    let text =
        format!("[providers.p]\nkind = \"{kind}\"\nbase_url = \"http://127.0.0.1:9/v1\"\n{extra}");
    let config = load_str(&text, Path::new("t.toml"), &|_: &str| None).expect("config");
    config.providers["p"].clone()
}

fn body_of(p: &ProviderConfig, req: Value) -> Value {
    let req: ChatRequest = serde_json::from_value(req).expect("request");
    let up = Adapter::for_provider(p)
        .chat_request(p, &req, "m")
        .expect("build");
    serde_json::from_slice(&up.body).expect("json body")
}

#[test]
fn a_stream_asks_for_usage_the_client_did_not() {
    let p = provider("openai_compatible", "");
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let body = body_of(&p, json!({"model": "x", "messages": msgs, "stream": true}));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    // Other stream options the client set travel with it.
    let body = body_of(
        &p,
        json!({"model": "x", "messages": msgs, "stream": true,
               "stream_options": {"include_obfuscation": false}}),
    );
    assert_eq!(
        body["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
    // Not a stream: nothing to add.
    let body = body_of(&p, json!({"model": "x", "messages": msgs}));
    assert!(body.get("stream_options").is_none(), "{body}");
    // Mistral rejects the field (and sends usage anyway); any provider can opt out.
    for p in [
        provider("mistral", ""),
        provider("openai_compatible", "stream_usage = false\n"),
    ] {
        let body = body_of(&p, json!({"model": "x", "messages": msgs, "stream": true}));
        assert!(body.get("stream_options").is_none(), "{body}");
    }
}

fn fixture_stream() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openai/chat_stream.sse"
    );
    std::fs::read(path).expect("fixture")
}

/// Runs `stream` through a transcoder in pieces of `piece` bytes.
fn transcode(stream: &[u8], include_usage: bool, piece: usize) -> (Vec<u8>, Vec<StreamSignal>) {
    let adapter = Adapter::for_kind(tollgate_config::ProviderKind::OpenAi);
    let mut t = adapter.stream_transcoder(ClientApi::OpenAi, include_usage);
    let (mut out, mut signals) = (Vec::new(), Vec::new());
    for chunk in stream.chunks(piece) {
        let done = t.push(&Bytes::copy_from_slice(chunk));
        out.extend_from_slice(&done.bytes);
        signals.extend(done.signals);
    }
    let end = t.finish();
    out.extend_from_slice(&end.bytes);
    signals.extend(end.signals);
    (out, signals)
}

#[test]
fn the_usage_chunk_is_priced_but_only_shown_to_clients_who_asked() {
    let stream = fixture_stream();
    let usage_chunk = stream
        .split(|b| *b == b'\n')
        .find(|l| l.windows(12).any(|w| w == b"\"choices\":[]"))
        .expect("the fixture has a usage-only chunk")
        .to_vec();
    // Asked: bytes as they came.
    let (asked, signals) = transcode(&stream, true, 4096);
    assert_eq!(asked, stream);
    assert!(signals.iter().any(|s| matches!(s, StreamSignal::Usage(_))));
    // Not asked: the same bytes less that one event and the `"usage":null` OpenAI adds to
    // every other chunk once usage is asked for, whatever the chunk boundaries; the gateway
    // still learns the usage.
    let mut expected = stream.clone();
    let at = expected
        .windows(usage_chunk.len())
        .position(|w| w == usage_chunk.as_slice())
        .expect("position");
    expected.drain(at..at + usage_chunk.len() + 2); // the line and its blank line
    let expected = String::from_utf8(expected)
        .expect("utf-8")
        .replace(",\"usage\":null", "");
    assert!(!expected.contains("\"usage\""));
    for piece in [1, 7, 64, 4096] {
        let (out, signals) = transcode(&stream, false, piece);
        assert_eq!(String::from_utf8_lossy(&out), expected, "piece {piece}");
        let usage = signals.iter().find_map(|s| match s {
            StreamSignal::Usage(u) => Some(*u),
            _ => None,
        });
        let usage = usage.expect("usage still observed");
        assert_eq!(
            (usage.input_tokens, usage.cached_input_tokens),
            (1250, 1024)
        );
        assert!(signals.contains(&StreamSignal::Done));
    }
}

#[test]
fn an_unterminated_last_event_is_still_forwarded() {
    let stream =
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]";
    let (out, _) = transcode(stream, false, 5);
    assert_eq!(out, stream);
}

#[test]
fn streams_report_how_much_they_have_generated() {
    let stream = fixture_stream();
    let (_, signals) = transcode(&stream, true, 7);
    let generated: usize = signals
        .iter()
        .map(|s| match s {
            StreamSignal::Generated(n) => *n,
            _ => 0,
        })
        .sum();
    // "Hello", "!", " The", " capital", " of France", " is", " Paris", "."
    assert_eq!(generated, "Hello! The capital of France is Paris.".len());
    // Translated streams count their text too.
    let adapter = Adapter::for_kind(tollgate_config::ProviderKind::OpenAi);
    let mut t = adapter.stream_transcoder(ClientApi::Anthropic, false);
    let mut translated = 0;
    for chunk in stream.chunks(64) {
        for s in t.push(&Bytes::copy_from_slice(chunk)).signals {
            if let StreamSignal::Generated(n) = s {
                translated += n;
            }
        }
    }
    assert_eq!(translated, generated);
}

#[test]
fn an_unterminated_usage_chunk_at_the_end_is_still_stripped_and_counted() {
    let text = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}";
    let stream = format!("{text}{usage}");
    let (out, signals) = transcode(stream.as_bytes(), false, 9);
    assert_eq!(String::from_utf8_lossy(&out), text);
    assert!(
        signals
            .iter()
            .any(|s| matches!(s, StreamSignal::Usage(u) if u.input_tokens == 3))
    );
}
