//! The built-in guardrails on a 4 KB prompt: the PII guardrail alone (target ≤ 20 µs), on a
//! clean prompt and on one with personal data to redact, and a request through PII,
//! keywords and injection together.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_guard::keywords::WordList;
use tollgate_guard::pii::PiiDetector;
use tollgate_guard::{Action, Check, Guardrail, Guardrails, injection::InjectionDetector};
use tollgate_types::ChatRequest;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// About 4 KB of ordinary prose with numbers, as support chats have.
fn prose() -> String {
    let line = "Hello, I ordered 3 items on 2026-11-02 (order #48213) and only 2 arrived. \
                The invoice says 19.99 EUR each; could you check the tracking and refund one? ";
    line.repeat(4096 / line.len() + 1)[..4096].to_owned()
}

fn with_pii() -> String {
    let mut p = prose();
    p.replace_range(1000..1000, " mail me at jane.doe@example.com ");
    p.replace_range(3000..3000, " card 4111 1111 1111 1111 ");
    p
}

fn guard(name: &str, check: Check, action: Action) -> Guardrail {
    Guardrail {
        name: name.to_owned(),
        check,
        action,
        on_request: true,
        on_response: true,
        models: None,
    }
}

fn bench(c: &mut Criterion) {
    let detector = PiiDetector::new(&[]);
    let clean = prose();
    let dirty = with_pii();
    c.bench_function("pii_4k/clean", |b| {
        b.iter(|| detector.redact(black_box(&clean)))
    });
    c.bench_function("pii_4k/redact_two", |b| {
        b.iter(|| detector.redact(black_box(&dirty)))
    });
    let set = Guardrails::new(vec![
        guard("pii", Check::Pii(PiiDetector::new(&[])), Action::Redact),
        guard(
            "words",
            Check::DenyWords(WordList::new(&[
                "project falcon".to_owned(),
                "internal only".to_owned(),
            ])),
            Action::Deny,
        ),
        guard(
            "injection",
            Check::Injection(InjectionDetector::default(), 0.5),
            Action::Deny,
        ),
    ]);
    let req: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "m", "messages": [{"role": "user", "content": dirty}]
    }))
    .expect("request");
    c.bench_function("request_4k/pii_words_injection", |b| {
        b.iter_batched(
            || req.clone(),
            |mut r| set.check_request("m", black_box(&mut r)),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
