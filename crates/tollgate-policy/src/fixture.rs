//! Policy fixture tests: `*.test.json` files of `{request, context, expect}` cases run against a
//! script, as `tollgate policy test DIR` does.
//!
//! ```json
//! { "script": "../cost_tier.rhai",
//!   "context": { "targets": ["cheap/mini", "big/large"],
//!                "prices": { "cheap/mini": {"input_per_1m": 0.15, "output_per_1m": 0.6} } },
//!   "cases": [ { "name": "simple goes cheap",
//!                "request": { "model": "auto", "messages": [{"role": "user", "content": "hi"}] },
//!                "expect": { "route": { "targets": ["cheap/mini"] } } } ] }
//! ```
//! A case may override `context` keys and add `tags`, `metadata`, `headers` and `identity`.
//! `expect` holds one of `route` (a partial decision, or `null` for none), `on_request`
//! (`"allow"`, `{"deny": STATUS}` or a partial change map), `on_response` (`"accept"`,
//! `"escalate"` or a score, for the case's `response`) or `error` (an error kind).

use crate::{
    ContextData, ContextView, Identity, PolicyEngine, Price, RequestVerdict, RequestView,
    ResponseVerdict, ResponseView, TargetHealth,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    script: String,
    #[serde(default)]
    context: Map<String, Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: Value,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    metadata: Map<String, Value>,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    identity: HashMap<String, String>,
    /// The answer `on_response` sees: `text`, `finish_reason`, `output_tokens`,
    /// `mean_logprob`, `tier`, `score`.
    #[serde(default)]
    response: Map<String, Value>,
    expect: Map<String, Value>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// `file: case name`.
    pub name: String,
    /// `None` on success, or a diff of expected and actual.
    pub failure: Option<String>,
}

/// Finds every `*.test.json` under `dir` (recursively), sorted.
pub fn find(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".test.json") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Runs every case of one fixture file. A file that cannot be read or compiled is one failure.
pub fn run_file(engine: &PolicyEngine, path: &Path) -> Vec<CaseResult> {
    let file_name = path.display().to_string();
    let fail = |msg: String| {
        vec![CaseResult {
            name: file_name.clone(),
            failure: Some(msg),
        }]
    };
    let fixture: FixtureFile = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot read fixture: {e}")),
    };
    let script_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&fixture.script);
    let source = match std::fs::read_to_string(&script_path) {
        Ok(s) => s,
        Err(e) => return fail(format!("{}: {e}", script_path.display())),
    };
    let script = match engine.compile(&script_path.display().to_string(), &source) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    fixture
        .cases
        .iter()
        .map(|case| CaseResult {
            name: format!("{file_name}: {}", case.name),
            failure: run_case(engine, &script, &fixture.context, case).err(),
        })
        .collect()
}

fn run_case(
    engine: &PolicyEngine,
    script: &crate::Script,
    base: &Map<String, Value>,
    case: &Case,
) -> Result<(), String> {
    let mut ctx_json = base.clone();
    ctx_json.extend(case.context.clone());
    let ctx = ContextView(std::sync::Arc::new(context(&ctx_json)?));
    let req: tollgate_types::ChatRequest =
        serde_json::from_value(case.request.clone()).map_err(|e| format!("bad request: {e}"))?;
    let id = |k: &str| case.identity.get(k).cloned().unwrap_or_default();
    let identity = Identity {
        key: id("key"),
        tenant: id("tenant"),
        user: id("user"),
        session: id("session"),
    };
    let headers = case
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let view = RequestView::new(
        &req,
        identity,
        case.tags.clone(),
        case.metadata.clone(),
        headers,
    );

    let (entry, expected) = case.expect.iter().next().ok_or("`expect` is empty")?;
    let actual = match entry.as_str() {
        "route" => match engine.route(script, &view, &ctx) {
            Ok(None) => Value::Null,
            Ok(Some(d)) => json!({"targets": d.targets, "fallbacks": d.fallbacks, "tags": d.tags,
                "cache": format!("{:?}", d.cache).to_lowercase(),
                "overrides": {"max_tokens": d.overrides.max_tokens, "temperature": d.overrides.temperature},
                "cascade": d.cascade}),
            Err(e) => json!({"error": e.kind.as_str(), "message": e.to_string()}),
        },
        "on_request" => match engine.on_request(script, &view, &ctx) {
            Ok(RequestVerdict::Allow) => json!("allow"),
            Ok(RequestVerdict::Deny { status, message }) => {
                json!({"deny": status, "message": message})
            }
            Ok(RequestVerdict::Modify(m)) => {
                json!({"max_tokens": m.max_tokens, "temperature": m.temperature,
                "model": m.model, "keep_last_turns": m.keep_last_turns, "tags": m.tags})
            }
            Err(e) => json!({"error": e.kind.as_str(), "message": e.to_string()}),
        },
        "on_response" => match engine.on_response(script, &view, &response(&case.response), &ctx) {
            Ok(ResponseVerdict::Accept) => json!("accept"),
            Ok(ResponseVerdict::Escalate) => json!("escalate"),
            Ok(ResponseVerdict::Score(x)) => json!(x),
            Err(e) => json!({"error": e.kind.as_str(), "message": e.to_string()}),
        },
        "error" => {
            let err = engine
                .route(script, &view, &ctx)
                .err()
                .or_else(|| engine.on_request(script, &view, &ctx).err());
            match err {
                Some(e) => json!(e.kind.as_str()),
                None => json!(null),
            }
        }
        other => {
            return Err(format!(
                "unknown expectation `{other}` (route, on_request, on_response, error)"
            ));
        }
    };
    if matches_partially(expected, &actual) {
        Ok(())
    } else {
        Err(format!(
            "{entry}:\n  expected: {expected}\n  actual:   {actual}"
        ))
    }
}

/// The answer a case gives `on_response`.
fn response(j: &Map<String, Value>) -> ResponseView {
    let text = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or_default().into();
    ResponseView {
        text: text("text"),
        finish_reason: j
            .get("finish_reason")
            .and_then(Value::as_str)
            .unwrap_or("stop")
            .into(),
        output_tokens: j.get("output_tokens").and_then(Value::as_i64).unwrap_or(0),
        has_tool_calls: j
            .get("has_tool_calls")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        mean_logprob: j.get("mean_logprob").and_then(Value::as_f64),
        tier: j.get("tier").and_then(Value::as_i64).unwrap_or(1),
        score: j.get("score").and_then(Value::as_f64),
    }
}

/// `expected` matches when every key it names has a matching value in `actual`; arrays match
/// item by item (same length), so a list of maps may name only some keys of each.
fn matches_partially(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| matches_partially(v, av))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| matches_partially(x, y))
        }
        (e, a) => e == a,
    }
}

fn context(j: &Map<String, Value>) -> Result<ContextData, String> {
    let mut c = ContextData::default();
    for (k, v) in j {
        match k.as_str() {
            "targets" => {
                c.targets = serde_json::from_value(v.clone())
                    .map_err(|e| format!("context.targets: {e}"))?
            }
            "unix_time" => {
                c.unix_time = v.as_i64().ok_or("context.unix_time must be an integer")?
            }
            "budget_remaining" => c.budget_remaining = v.as_f64(),
            "prices" => {
                let mut prices = HashMap::new();
                for (t, p) in v.as_object().ok_or("context.prices must be a map")? {
                    let f = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                    let price = Price {
                        input_per_1m: f("input_per_1m"),
                        output_per_1m: f("output_per_1m"),
                    };
                    prices.insert(t.clone(), price);
                }
                c.prices = std::sync::Arc::new(prices);
            }
            "health" => {
                for (t, h) in v.as_object().ok_or("context.health must be a map")? {
                    let f = |k: &str| h.get(k).and_then(Value::as_f64).unwrap_or(0.0);
                    let circuit = match h.get("circuit").and_then(Value::as_str) {
                        Some("open") => "open",
                        Some("half_open") => "half_open",
                        _ => "closed",
                    };
                    c.health.insert(
                        t.clone(),
                        TargetHealth {
                            ewma_latency_ms: f("ewma_latency_ms"),
                            ewma_ttft_ms: f("ewma_ttft_ms"),
                            error_rate: f("error_rate"),
                            in_flight: f("in_flight") as i64,
                            circuit,
                        },
                    );
                }
            }
            "hour" | "weekday" => {}
            other => return Err(format!("unknown context key `{other}`")),
        }
    }
    // `hour` and `weekday` are a friendlier way to set the clock than `unix_time`.
    if j.contains_key("hour") || j.contains_key("weekday") {
        const DAYS: [&str; 7] = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"];
        let hour = j.get("hour").and_then(Value::as_i64).unwrap_or(12);
        let day = j.get("weekday").and_then(Value::as_str).unwrap_or("mon");
        let offset = DAYS
            .iter()
            .position(|d| *d == day)
            .ok_or(format!("unknown weekday `{day}`"))? as i64;
        c.unix_time = offset * 86_400 + hour * 3_600;
    }
    Ok(c)
}
