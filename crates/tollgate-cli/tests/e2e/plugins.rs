//! Wasm plugins in a running gateway, with the example plugins `plugins/build.sh` builds:
//! requests refused and changed by `on-request`, streams cut off by `on-chunk`, hostile
//! plugins (an endless loop, unbounded memory, a trap) stopped under both failure modes, and
//! a plugin file replaced under load.
//!
//! The plugins come from `TOLLGATE_TEST_PLUGIN_DIR` (tests/run.sh builds them and sets it),
//! else from `plugins/target` if built there; without either, these tests say they are
//! skipped.

use crate::harness::{Gateway, chat, mock, mock_provider, mock_received};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The directory of built example plugins, or `None` (and a note) when they are not built.
fn plugin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("TOLLGATE_TEST_PLUGIN_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("c_keyword_guard.wasm").is_file(),
            "TOLLGATE_TEST_PLUGIN_DIR={} has no built plugins: run plugins/build.sh",
            dir.display()
        );
        return Some(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/target");
    if built.join("c_keyword_guard.wasm").is_file() {
        return Some(built);
    }
    eprintln!(
        "skipped: the example plugins are not built (run plugins/build.sh, or set TOLLGATE_TEST_PLUGIN_DIR)"
    );
    None
}

/// A `[[plugins]]` entry.
fn plugin(name: &str, file: &Path, extra: &str) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\npath = \"{}\"\n{extra}\n",
        file.display()
    )
}

/// Models served by one mock provider, which streams one token per chunk.
fn models(m: &tollgate_mock::MockHandle, names: &[&str]) -> String {
    let mut out = mock_provider("a", &m.base_url(), "\"x-mock-chunks\" = \"64\"");
    for n in names {
        out.push_str(&format!(
            "\n[models.{n}]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n"
        ));
    }
    out
}

async fn last_seen(m: &tollgate_mock::MockHandle) -> Value {
    mock_received(m)
        .await
        .pop()
        .expect("a request reached the mock")
}

async fn metrics(gw: &Gateway) -> String {
    gw.metrics().await
}

/// Checks one guest language's guard example: deny, redact and stop-stream.
pub async fn check_guard_example(file: &Path, config: &str) {
    let m = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n{}",
        models(&m, &["m"]),
        plugin("guard", file, &format!("config = {config}"))
    ))
    .await;

    let before = m.stats.requests();
    let resp = gw.chat("m", "What is project Falcon?").await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "plugin_denied", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|s| s.contains("guard") && s.contains("falcon")),
        "{body}"
    );
    assert_eq!(
        m.stats.requests(),
        before,
        "a refused request never reaches the mock"
    );

    let resp = gw.chat("m", "Tell me about Acme widgets").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        last_seen(&m).await["messages"][0]["content"],
        "Tell me about [REDACTED] widgets"
    );

    // Every mock answer starts "Mock answer:": the plugin stops the stream at " answer".
    let mut body = chat("m", "hello there");
    body["stream"] = json!(true);
    let resp = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    let mut content = String::new();
    let mut error = None;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        if let Some(s) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(s);
        }
        if v.get("error").is_some() {
            error = Some(v["error"].clone());
        }
    }
    assert_eq!(
        content, "Mock",
        "the text before the stop word goes out: {text}"
    );
    let error = error.unwrap_or_else(|| panic!("no SSE error event in {text}"));
    assert_eq!(error["code"], "plugin_denied", "{error}");
    assert!(
        !text.contains("[DONE]"),
        "a stopped stream does not finish: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn c_plugins_refuse_redact_tag_and_stop_streams() {
    let Some(dir) = plugin_dir() else { return };
    check_guard_example(
        &dir.join("c_keyword_guard.wasm"),
        r#"{ deny = ["falcon"], redact = ["acme"], stop = ["answer"] }"#,
    )
    .await;

    // The tag injector runs on every request and counts through the host's `metric`.
    let m = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n{}",
        models(&m, &["m"]),
        plugin(
            "tags",
            &dir.join("c_tag_injector.wasm"),
            r#"config = { tags = ["team-search"], long_prompt_tokens = 2 }"#
        )
    ))
    .await;
    let resp = gw.chat("m", "a prompt of several tokens").await;
    assert_eq!(resp.status(), 200);
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("tollgate_plugin_metric_total{plugin=\"tags\",name=\"tagged\"} 1"),
        "{metrics}"
    );
}

/// Runs `tollgate plugin test` on a guard example: it prints each hook's verdict (checked
/// here), and compiles the component into the on-disk cache first, so the gateways started
/// afterwards load it in milliseconds (a Python or JavaScript guest takes many seconds to
/// compile in a debug build).
fn plugin_test_cli(file: &Path, config: &str) -> Value {
    let dir = tempfile::tempdir().expect("dir");
    let request = dir.path().join("request.json");
    std::fs::write(
        &request,
        chat("m", "Tell me about Acme widgets").to_string(),
    )
    .expect("request");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["plugin", "test"])
        .arg(file)
        .arg("--request")
        .arg(&request)
        .args(["--config", config])
        .output()
        .expect("tollgate plugin test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["on_request"]["verdict"], "modify", "{report}");
    report
}

const GUARD_JSON: &str = r#"{"deny": ["falcon"], "redact": ["acme"], "stop": ["answer"]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn rust_plugin_refuses_redacts_stops_streams_and_scores() {
    let Some(dir) = plugin_dir() else { return };
    let file = dir.join("rs_json_tidy.wasm");
    let report = plugin_test_cli(&file, GUARD_JSON);
    assert_eq!(
        report["hooks"],
        json!(["on-request", "on-response", "on-chunk", "score"])
    );
    check_guard_example(
        &file,
        r#"{ deny = ["falcon"], redact = ["acme"], stop = ["answer"] }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_plugin_refuses_redacts_and_stops_streams() {
    let Some(dir) = plugin_dir() else { return };
    let file = dir.join("py_pii_redactor.wasm");
    let config = r#"{"rules": {"REDACTED": "(?i)acme"}, "deny": ["falcon"], "stop": ["answer"]}"#;
    let report = plugin_test_cli(&file, config);
    assert_eq!(
        report["on_request"]["messages"][0]["text"],
        "Tell me about [REDACTED] widgets"
    );
    check_guard_example(
        &file,
        r#"{ rules = { REDACTED = "(?i)acme" }, deny = ["falcon"], stop = ["answer"] }"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_plugin_refuses_redacts_stops_streams_and_routes() {
    let Some(dir) = plugin_dir() else { return };
    let file = dir.join("js_topic_router.wasm");
    let report = plugin_test_cli(&file, GUARD_JSON);
    assert_eq!(report["hooks"], json!(["on-request", "on-chunk", "route"]));
    check_guard_example(
        &file,
        r#"{ deny = ["falcon"], redact = ["acme"], stop = ["answer"] }"#,
    )
    .await;

    // Routing: a request about code goes to the large model first.
    let m = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"mock-small\" }}, {{ provider = \"a\", model = \"mock-large\" }}]\n{}",
        mock_provider("a", &m.base_url(), ""),
        plugin(
            "router",
            &file,
            r#"config = { topics = { code = ["function"] }, prefer = { code = "mock-large" } }"#
        )
    ))
    .await;
    let served = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-tollgate-model")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let resp = gw.chat("m", "write a function that adds").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served(&resp), "mock-large");
    let resp = gw.chat("m", "tell me a story").await;
    assert_eq!(served(&resp), "mock-small");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_are_stopped_and_fail_open_or_closed() {
    let Some(dir) = plugin_dir() else { return };
    let hostile = dir.join("c_hostile.wasm");
    let m = mock().await;
    let mut body = models(
        &m,
        &[
            "clean",
            "loop_open",
            "loop_closed",
            "grow_open",
            "grow_closed",
            "trap_open",
            "trap_closed",
        ],
    );
    for mode in ["loop", "grow", "trap"] {
        for (fail, on_error) in [("open", "fail_open"), ("closed", "fail_closed")] {
            body.push_str(&plugin(
                &format!("{mode}_{fail}"),
                &hostile,
                &format!(
                    "on_error = \"{on_error}\"\ntimeout_ms = 50\nmemory_mb = 8\nmodels = [\"{mode}_{fail}\"]\nconfig = {{ mode = \"{mode}\" }}"
                ),
            ));
        }
    }
    let gw = Arc::new(Gateway::start(&body).await);

    // A steady stream of clean requests alongside, which must all succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let resp = gw.chat("clean", "hi").await;
                assert_eq!(resp.status(), 200);
                latencies.push(t.elapsed());
            }
            latencies
        })
    };
    for mode in ["loop", "grow", "trap"] {
        for _ in 0..3 {
            let started = Instant::now();
            let open = gw.chat(&format!("{mode}_open"), "hi").await;
            assert_eq!(open.status(), 200, "{mode}: fail_open still serves");
            let closed = gw.chat(&format!("{mode}_closed"), "hi").await;
            assert_eq!(closed.status(), 503, "{mode}: fail_closed refuses");
            let body: Value = closed.json().await.expect("json");
            assert_eq!(body["error"]["code"], "plugin_failed", "{body}");
            // Both calls are cut off at their 50 ms deadline at most (plus a new instance).
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{mode} took {:?}",
                started.elapsed()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = background.await.expect("background");
    latencies.sort();
    assert!(!latencies.is_empty());
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "clean requests alongside hostile plugins: {} requests, p50 {:?}, p99 {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        p99
    );

    let metrics = metrics(&gw).await;
    for (plugin, kind) in [
        ("loop_open", "timeout"),
        ("loop_closed", "timeout"),
        ("grow_open", "memory"),
        ("grow_closed", "memory"),
        ("trap_open", "trap"),
        ("trap_closed", "trap"),
    ] {
        assert!(
            metrics.contains(&format!(
                "tollgate_plugin_errors_total{{plugin=\"{plugin}\",kind=\"{kind}\"}} 3"
            )),
            "{plugin} {kind}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_replaced_under_load_swaps_in_and_a_corrupt_one_is_rejected() {
    let Some(dir) = plugin_dir() else { return };
    let m = mock().await;
    let guard = std::fs::read(dir.join("c_keyword_guard.wasm")).expect("guard");
    let tagger = std::fs::read(dir.join("c_tag_injector.wasm")).expect("tagger");
    let body = format!(
        "{}\n{}",
        models(&m, &["m"]),
        "[[plugins]]\nname = \"swap\"\npath = \"swap.wasm\"\nconfig = { deny = [\"falcon\"] }\n"
    );
    // The plugin lives next to the config, which the harness owns: write it before start.
    let staging = tempfile::tempdir().expect("dir");
    std::fs::write(staging.path().join("swap.wasm"), &guard).expect("write");
    let gw = Arc::new(
        Gateway::start(&body.replace(
            "swap.wasm",
            &staging.path().join("swap.wasm").display().to_string(),
        ))
        .await,
    );
    let write_plugin = |bytes: &[u8]| {
        let tmp = gw.config_path().with_file_name(".swap.wasm.tmp");
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, gw.config_path().with_file_name("swap.wasm")).expect("rename");
    };
    write_plugin(&guard);
    gw.write_config(&body);
    let denied = |gw: Arc<Gateway>| async move { gw.chat("m", "falcon?").await.status() == 403 };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !denied(gw.clone()).await {
        assert!(
            Instant::now() < deadline,
            "the plugin next to the config never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gw, stop) = (gw.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                if gw.chat("m", "hi").await.status() == 200 {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Swap in another plugin: "falcon" is no longer refused.
    write_plugin(&tagger);
    let deadline = Instant::now() + Duration::from_secs(10);
    while denied(gw.clone()).await {
        assert!(Instant::now() < deadline, "the new plugin never swapped in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A corrupt file is rejected; the last good plugin keeps serving.
    write_plugin(b"\0asm this is not a component");
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.await.expect("client");
        ok += o;
        failed += f;
    }
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the swaps",
        ok + failed
    );
    assert!(ok > 20, "only {ok} requests ran");
    assert_eq!(
        gw.chat("m", "falcon?").await.status(),
        200,
        "the good plugin still serves"
    );
    let status: Value = reqwest::get(format!("{}/admin/reload", gw.admin_url))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("swap.wasm") && error.contains("not a loadable Wasm component"),
        "{status}"
    );
}
