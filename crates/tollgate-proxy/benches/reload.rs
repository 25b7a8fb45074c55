//! Building and swapping in a new live state for a config with 10 routing scripts: the cost of
//! one hot reload.
//!
//! `cargo bench -p tollgate-proxy`

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use std::fmt::Write as _;
use std::sync::Arc;
use tollgate_proxy::live::LiveState;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/cost_tier.rhai");
    let source = std::fs::read_to_string(policies).expect("cost_tier.rhai");
    let mut config = String::from(
        "[providers.cheap]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\
         [providers.frontier]\nkind = \"openai_compatible\"\nbase_url = \"http://127.0.0.1:2/v1\"\n",
    );
    for i in 0..10 {
        // Ten distinct scripts, so each is compiled.
        let path = dir.path().join(format!("policy{i}.rhai"));
        std::fs::write(&path, format!("// variant {i}\n{source}")).expect("script");
        let _ = write!(
            config,
            "[models.m{i}]\npolicy = \"{}\"\ntargets = [{{ provider = \"cheap\", model = \"mini\" }}, \
             {{ provider = \"frontier\", model = \"large\" }}]\n",
            path.display()
        );
    }
    let config_path = dir.path().join("tollgate.toml");
    std::fs::write(&config_path, &config).expect("config");
    let live = ArcSwap::from_pointee(
        LiveState::build(tollgate_config::load(&config_path).expect("config"), 1).expect("state"),
    );
    c.bench_function("reload_10_scripts", |b| {
        b.iter(|| {
            // What a reload does: read and validate the config, compile every script, swap.
            let cfg = tollgate_config::load(&config_path).expect("config");
            let state = LiveState::build(cfg, 2).expect("state");
            assert_eq!(state.policies.len(), 10);
            live.store(Arc::new(state));
        })
    });
}

criterion_group!(reload_benches, benches);
criterion_main!(reload_benches);
