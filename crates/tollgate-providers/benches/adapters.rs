//! Hot-path benchmarks: parse a client body, build the upstream request, observe an SSE stream.
//!
//! `cargo bench -p tollgate-providers`

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_config::load_str;
use tollgate_providers::Adapter;
use tollgate_types::ChatRequest;

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

criterion_group!(adapter_benches, benches);
criterion_main!(adapter_benches);
