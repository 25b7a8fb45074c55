//! What a cascade adds on the gateway's side when its cheap tier's answer is kept: scoring the
//! answer (log-probabilities, its JSON schema, hedging phrases, a self-reported confidence) and
//! re-emitting it as SSE to a streaming client. The model calls themselves are not measured.
//!
//! `cargo bench -p tollgate-proxy --bench cascade`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use tollgate_config::cascade::{LogprobMeasure, REFUSAL_PHRASES, ScorerKind};
use tollgate_proxy::cascade::{reemit, score};
use tollgate_types::ChatRequest;

/// A 1 KB answer of about 200 tokens with their log-probabilities.
fn answer(text: &str) -> Value {
    let tokens: Vec<Value> = text
        .split_inclusive(' ')
        .enumerate()
        .map(|(i, t)| {
            json!({"token": t, "logprob": -0.05 - (i % 7) as f64 * 0.01,
            "bytes": t.as_bytes(), "top_logprobs": []})
        })
        .collect();
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "small",
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": text},
            "logprobs": {"content": tokens}}],
        "usage": {"prompt_tokens": 40, "completion_tokens": tokens_len(text), "total_tokens": 0}})
}

fn tokens_len(text: &str) -> usize {
    text.split_inclusive(' ').count()
}

fn benches(c: &mut Criterion) {
    let text = "The gateway routes each request to a model that answers with care. ".repeat(15);
    let json_text = format!("{{\"city\": \"Paris\", \"why\": \"{}\"}}", &text[..900]);
    let req: ChatRequest = serde_json::from_value(json!({"model": "m",
        "messages": [{"role": "user", "content": "Which city?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema":
            {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}}))
    .expect("request");
    let plain = answer(&text);
    let structured = answer(&json_text);
    let refusal = ScorerKind::Refusal {
        phrases: REFUSAL_PHRASES.iter().map(|p| (*p).to_owned()).collect(),
        penalty: 0.5,
    };
    let self_report = ScorerKind::SelfReport {
        instruction: String::new(),
        missing: 0.0,
    };
    let tagged = answer(&format!("{text}\n<confidence>0.87</confidence>"));
    let mut group = c.benchmark_group("cascade_1kb_answer");
    group.bench_function("score_logprobs_mean", |b| {
        let kind = ScorerKind::Logprobs(LogprobMeasure::Mean);
        b.iter(|| score::local(&kind, &req, &mut black_box(plain.clone())))
    });
    group.bench_function("score_json_schema", |b| {
        b.iter(|| {
            score::local(
                &ScorerKind::JsonSchema,
                &req,
                &mut black_box(structured.clone()),
            )
        })
    });
    group.bench_function("score_refusal", |b| {
        b.iter(|| score::local(&refusal, &req, &mut black_box(plain.clone())))
    });
    group.bench_function("score_self_report", |b| {
        b.iter(|| score::local(&self_report, &req, &mut black_box(tagged.clone())))
    });
    group.bench_function("clone_only", |b| b.iter(|| black_box(plain.clone())));
    // As a client that did not ask for logprobs gets it.
    let mut sent = plain.clone();
    sent["choices"][0]["logprobs"] = Value::Null;
    group.bench_function("reemit_sse", |b| {
        b.iter(|| reemit::render(black_box(&sent), true))
    });
    group.finish();
}

criterion_group!(cascade, benches);
criterion_main!(cascade);
