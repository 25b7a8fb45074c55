//! `route()` of the example `cost_tier.rhai` on a realistic 2 KB request.
//!
//! `cargo bench -p tollgate-policy`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use tollgate_policy::{
    ContextData, ContextView, Identity, Limits, PolicyEngine, Price, RequestView,
};
use tollgate_types::ChatRequest;

// The allocator the gateway binary runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn benches(c: &mut Criterion) {
    let engine = PolicyEngine::new(Limits::default());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/cost_tier.rhai");
    let source = std::fs::read_to_string(path).expect("cost_tier.rhai");
    let script = engine.compile(path, &source).expect("compile");
    let prompt =
        "Our quarterly revenue grew while costs fell; summarise the drivers for the board. "
            .repeat(25);
    let req: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "auto",
        "messages": [{"role": "system", "content": "You are a helpful analyst."},
                     {"role": "user", "content": &prompt[..2000]}]
    }))
    .expect("request");
    let mut data = ContextData::now();
    data.targets = vec!["cheap/mini".into(), "frontier/large".into()];
    Arc::make_mut(&mut data.prices).insert(
        "cheap/mini".into(),
        Price {
            input_per_1m: 0.15,
            output_per_1m: 0.6,
        },
    );
    Arc::make_mut(&mut data.prices).insert(
        "frontier/large".into(),
        Price {
            input_per_1m: 2.5,
            output_per_1m: 10.0,
        },
    );
    let ctx = ContextView(Arc::new(data));
    c.bench_function("cost_tier_route/2KB", |b| {
        b.iter(|| {
            // A fresh view per call, as per request in the proxy (token estimate included).
            let view = RequestView::new(
                &req,
                Identity::default(),
                Vec::new(),
                Default::default(),
                Vec::new(),
            );
            engine
                .route(&script, black_box(&view), &ctx)
                .expect("route")
        })
    });
    c.bench_function("compile_10_scripts", |b| {
        b.iter(|| {
            for _ in 0..10 {
                black_box(engine.compile(path, &source).expect("compile"));
            }
        })
    });
}

criterion_group!(policy_benches, benches);
criterion_main!(policy_benches);
