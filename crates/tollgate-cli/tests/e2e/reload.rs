use crate::harness::{Gateway, chat, mock_provider};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tollgate_mock::{MockConfig, spawn};

/// Version `v`: the config routes model `m` to upstream model `v{v}` through `route-{v}.rhai`,
/// which names the same target. Each version has its own script file, so the config and the
/// script it names always change together.
fn valid(base_url: &str, v: usize) -> (String, String) {
    let script = format!("// version {v}\nfn route(req, ctx) {{ \"a/v{v}\" }}\n");
    let config = format!(
        "{}\n[models.m]\npolicy = \"route-{v}.rhai\"\ntargets = [{{ provider = \"a\", model = \"v{v}\" }}]\n",
        mock_provider("a", base_url, "")
    );
    (script, config)
}

/// A broken version: odd ones have a script that does not compile, the others a bad config.
/// Either way it would route to `bad{v}` if it were ever loaded.
fn invalid(base_url: &str, v: usize) -> (String, String) {
    let (script, mut config) = valid(base_url, v);
    let config_bad = v % 4 == 3;
    let script = if config_bad {
        script
    } else {
        format!("fn route(req, ctx) {{ \"a/bad{v}\" \n")
    };
    config = config.replace(&format!("model = \"v{v}\""), &format!("model = \"bad{v}\""));
    if config_bad {
        config.push_str("\nunknown_setting = true\n");
    }
    (script, config)
}

/// 200 rewrites of the config and its script, alternating valid and invalid versions, while
/// clients keep streaming and non-streaming requests going: nothing fails, every response comes
/// from exactly one valid version, and invalid versions never serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_never_fails_a_request_or_serves_a_bad_version() {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    let base = m.base_url();
    let (script, config) = valid(&base, 0);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("route-0.rhai"), &script).expect("script");
    let gw = Arc::new(
        Gateway::start(&config.replace(
            "route-0.rhai",
            &dir.path().join("route-0.rhai").display().to_string(),
        ))
        .await,
    );
    // From here on scripts live next to the config, which the harness owns.
    gw.write_file("route-0.rhai", &script);
    gw.write_config(&config);

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (gw, stop) = (gw.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: Vec<(u16, String, String)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut body = chat("m", "hi");
                let stream = (i + c).is_multiple_of(2);
                body["stream"] = stream.into();
                let resp = gw
                    .post("/v1/chat/completions")
                    .json(&body)
                    .send()
                    .await
                    .expect("send");
                let header = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let (status, model, version) = (
                    resp.status().as_u16(),
                    header("x-tollgate-model"),
                    header("x-tollgate-config-version"),
                );
                let text = resp.text().await.expect("body");
                let complete = if stream {
                    text.ends_with("data: [DONE]\n\n")
                } else {
                    text.contains("\"chat.completion\"")
                };
                seen.push((if complete { status } else { 0 }, model, version));
            }
            seen
        }));
    }
    let started = Instant::now();
    for v in 1..=200usize {
        let (script, config) = if v.is_multiple_of(2) {
            valid(&base, v)
        } else {
            invalid(&base, v)
        };
        gw.write_file(&format!("route-{v}.rhai"), &script);
        gw.write_config(&config);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Let the last (valid) version load, then stop the clients.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client"));
    }

    let failed: Vec<_> = all.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(5)]
    );
    let rps = all.len() as f64 / elapsed.as_secs_f64();
    assert!(rps >= 200.0, "only {rps:.0} requests/s");
    let mut model_of_version: HashMap<&str, &str> = HashMap::new();
    for (_, model, version) in &all {
        let n: usize = model
            .strip_prefix('v')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("served by `{model}`"));
        assert!(n.is_multiple_of(2), "an invalid version served: {model}");
        let previous = model_of_version.insert(version, model);
        assert!(
            previous.is_none_or(|p| p == model),
            "config version {version} served both {previous:?} and {model}"
        );
    }
    assert!(
        model_of_version.len() > 10,
        "only {} versions served",
        model_of_version.len()
    );
    let last = all.last().expect("responses");
    assert_eq!(last.1, "v200", "the final version serves");
    let status: serde_json::Value = reqwest::get(format!("{}/admin/reload", gw.admin_url))
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert!(status["last_error"].is_string(), "{status}");
    eprintln!(
        "{} requests at {rps:.0}/s across {} versions during 200 rewrites",
        all.len(),
        model_of_version.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_changes_are_refused_on_reload_and_post_reload_reports_errors() {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    let body = format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    );
    let gw = Gateway::start(&body).await;
    let config_path = gw.config_path().to_owned();
    let text = std::fs::read_to_string(&config_path).expect("config");
    gw.write_file(
        config_path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name"),
        &text.replacen("threads = 2", "threads = 3", 1),
    );
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/admin/reload", gw.admin_url))
        .send()
        .await
        .expect("reload");
    assert_eq!(resp.status(), 422);
    let err: serde_json::Value = resp.json().await.expect("json");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("server.threads cannot change on reload")),
        "{err}"
    );
    let ok = gw
        .post("/v1/chat/completions")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200, "the old state keeps serving");
    assert_eq!(ok.headers()["x-tollgate-config-version"], "1");
}
