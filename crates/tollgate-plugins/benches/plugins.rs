//! Per-call cost of plugin hooks, including getting an instance: warm (from the pool, the
//! default) and fresh (a new instance and `init` for every call), for each example guest
//! that is built (`plugins/build.sh`; `TOLLGATE_TEST_PLUGIN_DIR` points elsewhere).

use criterion::{Criterion, criterion_group, criterion_main};
use std::path::PathBuf;
use std::time::Duration;
use tollgate_config::plugins::{Grants, PluginConfig};
use tollgate_plugins::{Plugin, Plugins, RequestInfo};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn plugin_dir() -> PathBuf {
    std::env::var("TOLLGATE_TEST_PLUGIN_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target"),
        PathBuf::from,
    )
}

fn config(file: &str, config_json: &str, warm_instances: u32) -> PluginConfig {
    PluginConfig {
        name: file.to_owned(),
        path: plugin_dir().join(file),
        config_json: config_json.to_owned(),
        fail_open: false,
        timeout: Duration::from_secs(1),
        memory_bytes: 256 << 20,
        warm_instances,
        models: None,
        grants: Grants::default(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A 1 KB prompt with nothing to refuse or redact: the hook reads it all.
    let prompt =
        "Tell me how an LLM gateway routes requests to the cheapest capable model. ".repeat(14);
    let chat: tollgate_types::ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "chat",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    }))
    .expect("chat");
    let req = Plugins::request_view(
        &RequestInfo {
            id: "bench".to_owned(),
            ..RequestInfo::default()
        },
        &chat,
    );
    let guards = [
        ("c", "c_keyword_guard.wasm"),
        ("rust", "rs_json_tidy.wasm"),
        ("python", "py_pii_redactor.wasm"),
        ("js", "js_topic_router.wasm"),
    ];
    let guard_config = r#"{"deny": ["falcon"], "redact": ["acme"], "stop": ["answer"]}"#;
    let mut group = c.benchmark_group("plugin_on_request_1kb");
    for (lang, file) in guards {
        if !plugin_dir().join(file).is_file() {
            eprintln!("skipped {lang}: {file} is not built (plugins/build.sh)");
            continue;
        }
        let warm = Plugin::load(&config(file, guard_config, 4)).expect("load");
        group.bench_function(format!("{lang}/warm"), |b| {
            b.iter(|| rt.block_on(warm.on_request("bench", &req)).expect("call"));
        });
        if lang == "c" {
            // Only small guests can afford an instance per call (Python and JavaScript take
            // most of a millisecond to start).
            let fresh = Plugin::load(&config(file, guard_config, 0)).expect("load");
            group.bench_function(format!("{lang}/fresh_instance"), |b| {
                b.iter(|| rt.block_on(fresh.on_request("bench", &req)).expect("call"));
            });
        }
    }
    group.finish();

    // Close to the host's own cost per call (taking an instance, passing the 1 KB request in,
    // the call): `score` on a tiny answer, which each example answers with a constant or a
    // parse of "{}".
    let resp = tollgate_plugins::types::Response {
        provider: "mock".to_owned(),
        model: "mock".to_owned(),
        text: "{}".to_owned(),
        finish_reason: None,
        prompt_tokens: 10,
        completion_tokens: 2,
    };
    let mut group = c.benchmark_group("plugin_call_overhead");
    for (lang, file) in [
        ("c", "c_keyword_guard.wasm"),
        ("rust", "rs_json_tidy.wasm"),
        ("python", "py_pii_redactor.wasm"),
        ("js", "js_topic_router.wasm"),
    ] {
        if !plugin_dir().join(file).is_file() {
            continue;
        }
        let warm = Plugin::load(&config(file, guard_config, 4)).expect("load");
        group.bench_function(lang, |b| {
            b.iter(|| rt.block_on(warm.score("bench", &req, &resp)).expect("call"));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
