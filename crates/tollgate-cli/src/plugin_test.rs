//! `tollgate plugin test`: loads one plugin the way the gateway does and prints, as JSON,
//! what each hook it implements returns for a request (and an answer, streamed in chunks).

use anyhow::Context as _;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tollgate_config::plugins::{Grants, PluginConfig};
use tollgate_plugins::types::{
    ChunkVerdict, HookSet, Request, Response, ResponseVerdict, StreamState, Target, Verdict,
};
use tollgate_plugins::{Plugin, Plugins, RequestInfo};
use tollgate_types::ChatRequest;

/// The arguments of `tollgate plugin test`.
pub struct TestArgs<'a> {
    pub plugin: &'a Path,
    pub request: &'a Path,
    pub response: Option<&'a Path>,
    pub config: &'a str,
    pub timeout_ms: u64,
}

pub fn run(args: &TestArgs<'_>) -> anyhow::Result<ExitCode> {
    let read = |p: &Path| -> anyhow::Result<Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))
    };
    let chat: ChatRequest = serde_json::from_value(read(args.request)?)
        .with_context(|| format!("{}: not a chat completion request", args.request.display()))?;
    let response = args.response.map(read).transpose()?.map(|v| answer(&v));
    serde_json::from_str::<Value>(args.config).context("--config is not JSON")?;
    let config = PluginConfig {
        name: args
            .plugin
            .file_stem()
            .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned()),
        path: args.plugin.to_path_buf(),
        config_json: args.config.to_owned(),
        fail_open: false,
        timeout: Duration::from_millis(args.timeout_ms),
        memory_bytes: 64 << 20,
        warm_instances: 1,
        models: None,
        grants: Grants::default(),
    };
    let plugin = Plugin::load(&config)?;
    let info = RequestInfo {
        id: "plugin-test".to_owned(),
        ..RequestInfo::default()
    };
    let request = Plugins::request_view(&info, &chat);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = rt.block_on(hooks(&plugin, &request, response.as_ref()));
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&report)?
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The hooks' answers, as JSON.
async fn hooks(plugin: &Plugin, req: &Request, resp: Option<&Response>) -> Value {
    let mut out = json!({"plugin": plugin.name(), "hooks": hook_names(plugin.hooks)});
    let id = "plugin-test";
    if plugin.hooks.contains(HookSet::ON_REQUEST) {
        out["on_request"] = result(plugin.on_request(id, req).await.map(|v| verdict(&v)));
    }
    if plugin.hooks.contains(HookSet::ROUTE) {
        let candidates = vec![Target {
            provider: "mock".to_owned(),
            model: req.model.clone(),
        }];
        out["route"] = result(plugin.route(id, req, &candidates).await.map(|t| {
            t.map_or(Value::Null, |t| {
                t.iter()
                    .map(|t| json!({"provider": t.provider, "model": t.model}))
                    .collect()
            })
        }));
    }
    let Some(resp) = resp else {
        return out;
    };
    if plugin.hooks.contains(HookSet::ON_RESPONSE) {
        out["on_response"] = result(plugin.on_response(id, req, resp).await.map(|v| match v {
            ResponseVerdict::Allow => json!({"verdict": "allow"}),
            ResponseVerdict::Deny(d) => {
                json!({"verdict": "deny", "status": d.status, "message": d.message})
            }
            ResponseVerdict::Replace(t) => json!({"verdict": "replace", "text": t}),
        }));
    }
    if plugin.hooks.contains(HookSet::SCORE) {
        out["score"] = result(plugin.score(id, req, resp).await.map(Value::from));
    }
    if plugin.hooks.contains(HookSet::ON_CHUNK) {
        // The answer as a stream would bring it: word by word.
        let mut chunks = Vec::new();
        let mut sent = String::new();
        for (index, word) in (0u32..).zip(resp.text.split_inclusive(' ')) {
            let state = StreamState {
                index,
                tail: tail(&sent, 256).to_owned(),
            };
            let v = plugin.on_chunk(id, req, word, &state).await;
            let stop = matches!(v, Ok(ChunkVerdict::Stop(_)) | Err(_));
            chunks.push(json!({"chunk": word, "result": result(v.map(|v| match v {
                ChunkVerdict::Pass => json!({"verdict": "pass"}),
                ChunkVerdict::Replace(t) => json!({"verdict": "replace", "text": t}),
                ChunkVerdict::Stop(r) => json!({"verdict": "stop", "reason": r}),
            }))}));
            if stop {
                break;
            }
            sent.push_str(word);
        }
        out["on_chunk"] = Value::Array(chunks);
    }
    out
}

fn result(r: Result<Value, tollgate_plugins::HookError>) -> Value {
    r.unwrap_or_else(|e| json!({"error": e.to_string(), "kind": e.kind()}))
}

fn verdict(v: &Verdict) -> Value {
    match v {
        Verdict::Allow => json!({"verdict": "allow"}),
        Verdict::Deny(d) => json!({"verdict": "deny", "status": d.status, "message": d.message}),
        Verdict::Modify(m) => json!({
            "verdict": "modify",
            "messages": m.messages.as_ref().map(|ms| ms.iter()
                .map(|m| json!({"role": m.role, "text": m.text})).collect::<Vec<_>>()),
            "max_tokens": m.max_tokens,
            "model": m.model,
            "tags": m.tags,
        }),
    }
}

fn hook_names(h: HookSet) -> Vec<&'static str> {
    [
        (HookSet::ON_REQUEST, "on-request"),
        (HookSet::ON_RESPONSE, "on-response"),
        (HookSet::ON_CHUNK, "on-chunk"),
        (HookSet::SCORE, "score"),
        (HookSet::ROUTE, "route"),
    ]
    .into_iter()
    .filter(|(f, _)| h.contains(*f))
    .map(|(_, n)| n)
    .collect()
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    &s[s.ceil_char_boundary(s.len().saturating_sub(max))..]
}

/// The plugin's view of an OpenAI chat completion.
fn answer(v: &Value) -> Response {
    let count = |k: &str| u32::try_from(v["usage"][k].as_u64().unwrap_or(0)).unwrap_or(u32::MAX);
    Response {
        provider: "test".to_owned(),
        model: v["model"].as_str().unwrap_or_default().to_owned(),
        text: v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        finish_reason: v["choices"][0]["finish_reason"].as_str().map(str::to_owned),
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
    }
}
