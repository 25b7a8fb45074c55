//! The resilience machinery's cost on a healthy request: breaker admission, retry-budget count,
//! backoff schedule and breaker record, against the health bookkeeping that came before it
//! (in-flight gauge and moving averages).
//!
//! `cargo bench -p tollgate-proxy --bench resilience`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use tollgate_proxy::health::{HealthRegistry, Verdict};

fn benches(c: &mut Criterion) {
    let env = |_: &str| None;
    let config =
        tollgate_config::load_str("", std::path::Path::new("bench.toml"), &env).expect("defaults");
    let r = config.resilience;
    let health = HealthRegistry::default();
    let id = "primary/gpt-4o-mini";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    c.bench_function("per_request_health/before_resilience", |b| {
        b.iter(|| {
            let target = health.target(black_box(id));
            let in_flight = target.start();
            drop(in_flight);
            target.record(
                Verdict::Healthy,
                false,
                None,
                Duration::from_millis(120),
                None,
                &r,
            );
        })
    });
    c.bench_function("per_request_health/with_resilience", |b| {
        b.iter(|| {
            let target = health.target(black_box(id));
            let admission = target.admit(&r);
            target.count_request(&r);
            let in_flight = target.start();
            drop(in_flight);
            target.record(
                Verdict::Healthy,
                false,
                None,
                Duration::from_millis(120),
                None,
                &r,
            );
            admission
        })
    });
}

criterion_group!(resilience_benches, benches);
criterion_main!(resilience_benches);
