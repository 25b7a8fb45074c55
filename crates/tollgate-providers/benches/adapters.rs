//! Hot-path benchmarks: parse a client body, build the upstream request, observe an SSE stream.
//!
//! `cargo bench -p tollgate-providers`

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_config::load_str;
use tollgate_providers::Adapter;
use tollgate_types::{ChatRequest, ClientApi};

fn chat_body(prompt_bytes: usize) -> Vec<u8> {
    let prompt: String =
        "The quick brown fox jumps over the lazy dog. ".repeat(prompt_bytes / 45 + 1);
    serde_json::to_vec(&serde_json::json!({
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": &prompt[..prompt_bytes]}
        ],
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    }))
    .expect("json")
}

fn sse_stream(chunks: usize) -> Vec<Bytes> {
    let mut out = vec![Bytes::from_static(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    )];
    for i in 0..chunks {
        out.push(Bytes::from(format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"finish_reason\":null}}]}}\n\n"
        )));
    }
    out.push(Bytes::from_static(
        b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":20,\"total_tokens\":30}}\n\ndata: [DONE]\n\n",
    ));
    out
}

fn benches(c: &mut Criterion) {
    let env = |_: &str| None;
    let config = load_str(
        "[providers.up]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:18000/v1\"\n",
        std::path::Path::new("bench.toml"),
        &env,
    )
    .expect("config");
    let provider = &config.providers["up"];
    let adapter = Adapter::for_kind(provider.kind);
    for size in [2_048usize, 65_536] {
        let body = chat_body(size);
        c.bench_function(&format!("parse_chat_request/{size}B"), |b| {
            b.iter(|| serde_json::from_slice::<ChatRequest>(black_box(&body)).expect("parse"))
        });
        let req: ChatRequest = serde_json::from_slice(&body).expect("parse");
        c.bench_function(&format!("build_upstream_request/{size}B"), |b| {
            b.iter(|| {
                adapter
                    .chat_request(provider, black_box(&req), "gpt-4o-mini")
                    .expect("build")
            })
        });
    }
    let stream = sse_stream(64);
    // The stream a client gets without asking for usage: the gateway asked for it, so the
    // passthrough forwards whole events and drops the usage chunk.
    c.bench_function("filter_sse_stream/64_chunks", |b| {
        b.iter(|| {
            let mut t = adapter.stream_transcoder(ClientApi::OpenAi, false);
            let mut n = 0;
            for chunk in &stream {
                n += t.push(black_box(chunk)).bytes.len();
            }
            n
        })
    });
    c.bench_function("observe_sse_stream/64_chunks", |b| {
        b.iter(|| {
            let mut obs = adapter.stream_observer();
            let mut n = 0;
            for chunk in &stream {
                n += obs.observe(black_box(chunk)).len();
            }
            n
        })
    });
}

/// A 16 KB multi-turn conversation: system prompt, turns, a tool call and its result.
fn conversation_16k() -> ChatRequest {
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(70); // ~3.1 KB
    serde_json::from_value(serde_json::json!({
        "model": "bench",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": &filler},
            {"role": "assistant", "content": &filler},
            {"role": "user", "content": &filler},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": &filler},
            {"role": "user", "content": &filler}
        ],
        "temperature": 0.2, "max_tokens": 1024,
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    }))
    .expect("request")
}

/// 16 KB answers: OpenAI's and Anthropic's shape of the same text.
fn answers_16k() -> (Bytes, Bytes) {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(364); // ~16 KB
    let openai = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": &text, "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4000, "completion_tokens": 3600, "total_tokens": 7600}});
    let anthropic = serde_json::json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-x", "content": [{"type": "text", "text": &text}], "stop_reason": "end_turn",
        "stop_sequence": null, "usage": {"input_tokens": 4000, "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0, "output_tokens": 3600}});
    (
        Bytes::from(openai.to_string()),
        Bytes::from(anthropic.to_string()),
    )
}

/// The #3 budget: to and from Anthropic within 2x of the OpenAI pass-through.
fn dialect_benches(c: &mut Criterion) {
    let env = |_: &str| None;
    let config = load_str(
        "[providers.o]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
         [providers.a]\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:2/v1\"\n",
        std::path::Path::new("bench.toml"),
        &env,
    )
    .expect("config");
    let (openai_p, anthropic_p) = (&config.providers["o"], &config.providers["a"]);
    let req = conversation_16k();
    let (openai_answer, anthropic_answer) = answers_16k();
    let openai = Adapter::for_provider(openai_p);
    c.bench_function("round_trip_16k/openai_passthrough", |b| {
        b.iter(|| {
            let up = openai
                .chat_request(openai_p, black_box(&req), "gpt-4o-mini")
                .expect("build");
            let back = openai
                .translate_response(ClientApi::OpenAi, black_box(openai_answer.clone()))
                .expect("translate");
            (up.body.len(), back.body.len())
        })
    });
    c.bench_function("round_trip_16k/anthropic", |b| {
        b.iter(|| {
            let up = Adapter::Anthropic
                .chat_request(anthropic_p, black_box(&req), "claude-x")
                .expect("build");
            let back = Adapter::Anthropic
                .translate_response(ClientApi::OpenAi, black_box(anthropic_answer.clone()))
                .expect("translate");
            (up.body.len(), back.body.len())
        })
    });
    // The two halves, to see where a regression lands.
    c.bench_function("request_16k/anthropic", |b| {
        b.iter(|| {
            Adapter::Anthropic
                .chat_request(anthropic_p, black_box(&req), "claude-x")
                .expect("build")
        })
    });
    c.bench_function("response_16k/anthropic", |b| {
        b.iter(|| {
            Adapter::Anthropic
                .translate_response(ClientApi::OpenAi, black_box(anthropic_answer.clone()))
                .expect("translate")
        })
    });
}

criterion_group!(adapter_benches, benches, dialect_benches);
criterion_main!(adapter_benches);
