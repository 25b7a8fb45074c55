//! Script API, sandbox limits, and the example policies' fixture files.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_policy::{
    ContextData, ContextView, ErrorKind, Identity, Limits, PolicyEngine, RequestVerdict,
    RequestView, ResponseVerdict, ResponseView, fixture,
};
use tollgate_types::ChatRequest;

fn request(content: &str) -> RequestView {
    let req: ChatRequest = serde_json::from_value(serde_json::json!({
        "model": "auto",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": content}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "max_tokens": 100
    }))
    .expect("request");
    let identity = Identity {
        key: "k1".into(),
        tenant: "acme".into(),
        user: "u1".into(),
        session: "s1".into(),
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("team".into(), "search".into());
    RequestView::new(
        &req,
        identity,
        vec!["eu".into()],
        metadata,
        vec![("x-team".into(), "blue".into())],
    )
}

fn ctx() -> ContextView {
    ContextView(Arc::new(ContextData {
        targets: vec!["a/x".into(), "b/y".into()],
        unix_time: 4 * 86_400 + 13 * 3_600, // a Monday, 13:00 UTC
        ..ContextData::default()
    }))
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(Limits::default())
}

#[test]
fn scripts_see_the_request_and_context() {
    let e = engine();
    let script = e
        .compile(
            "view.rhai",
            r#"fn route(req, ctx) {
                if req.model != "auto" || req.last_user_text != "hello there" { throw "text"; }
                if req.system_text != "Be terse." || !req.has_tools || req.stream { throw "flags"; }
                if req.tokens < 5 || req.exact_tokens < 5 || req.turns != 2 || req.max_tokens != 100 { throw "numbers"; }
                if req.tenant != "acme" || req.user != "u1" || req.session != "s1" || req.key != "k1" { throw "identity"; }
                if !req.has_tag("eu") || req.meta("team") != "search" || req.header("X-Team") != "blue" { throw "tags"; }
                if req.header("authorization") != () { throw "headers outside the allow-list are invisible"; }
                if ctx.hour != 13 || ctx.weekday != "mon" || ctx.targets.len() != 2 { throw "ctx"; }
                if req.messages[1].role != "user" { throw "messages"; }
                ctx.targets[1]
            }"#,
        )
        .expect("compile");
    let d = e
        .route(&script, &request("hello there"), &ctx())
        .expect("route")
        .expect("decision");
    assert_eq!(d.targets, vec!["b/y".to_owned()]);
}

#[test]
fn compile_errors_name_file_line_and_column() {
    let err = engine()
        .compile("bad.rhai", "fn route(req, ctx) {\n  let x = ;\n}")
        .expect_err("syntax error");
    assert_eq!(err.kind, ErrorKind::Compile);
    assert_eq!((err.file.as_str(), err.line), ("bad.rhai", 2));
    assert!(err.to_string().starts_with("bad.rhai:2:"), "{err}");
    let err = engine()
        .compile("none.rhai", "fn helper() { 1 }")
        .expect_err("no entry point");
    assert!(err.message.contains("defines none of"), "{err}");
}

#[test]
fn runtime_errors_name_the_line() {
    let e = engine();
    let script = e
        .compile(
            "t.rhai",
            "fn route(req, ctx) {\n  let a = 1;\n  throw \"boom\";\n}",
        )
        .expect("compile");
    let err = e.route(&script, &request("x"), &ctx()).expect_err("throws");
    assert_eq!(err.kind, ErrorKind::Runtime);
    assert_eq!(err.line, 3, "{err}");
    assert!(err.message.contains("boom"));
}

#[test]
fn an_infinite_loop_is_stopped_quickly() {
    let limits = Limits {
        max_operations: u64::MAX,
        timeout: Duration::from_millis(5),
        ..Limits::default()
    };
    let e = PolicyEngine::new(limits);
    let script = e
        .compile("loop.rhai", "fn route(req, ctx) { loop {} }")
        .expect("compile");
    let started = Instant::now();
    let err = e
        .route(&script, &request("x"), &ctx())
        .expect_err("stopped");
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // The operation limit stops it too, without relying on the clock.
    let e = PolicyEngine::new(Limits {
        max_operations: 10_000,
        timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    let script = e
        .compile("loop.rhai", "fn route(req, ctx) { loop {} }")
        .expect("compile");
    assert_eq!(
        e.route(&script, &request("x"), &ctx())
            .expect_err("stopped")
            .kind,
        ErrorKind::Limit
    );
}

#[test]
fn by_price_orders_targets_cheapest_first() {
    let price = |input_per_1m, output_per_1m| tollgate_policy::Price {
        input_per_1m,
        output_per_1m,
    };
    let prices = [
        ("a/x".to_owned(), price(1.0, 10.0)),
        ("b/y".to_owned(), price(0.5, 2.0)),
        ("c/z".to_owned(), price(0.1, 2.0)),
    ];
    let ctx = ContextView(Arc::new(ContextData {
        targets: vec!["a/x".into(), "b/y".into(), "c/z".into(), "d/free".into()],
        prices: Arc::new(prices.into_iter().collect()),
        ..ContextData::default()
    }));
    let e = engine();
    let script = e
        .compile(
            "rank.rhai",
            r#"fn route(req, ctx) {
                let all = ctx.by_price();
                let two = ctx.by_price(["a/x", "b/y"]);
                if two != ["b/y", "a/x"] { throw `two: ${two}`; }
                all
            }"#,
        )
        .expect("compile");
    let decision = e
        .route(&script, &request("x"), &ctx)
        .expect("route")
        .expect("some");
    // Unpriced counts as free; equal output prices are ordered by input price.
    assert_eq!(decision.targets, ["d/free", "c/z", "b/y", "a/x"]);
    let bad = e
        .compile("bad.rhai", "fn route(req, ctx) { ctx.by_price([1, 2]) }")
        .expect("compile");
    let err = e.route(&bad, &request("x"), &ctx).expect_err("not strings");
    assert!(
        err.message.contains("by_price: targets must be strings"),
        "{err}"
    );
}

#[test]
fn a_throttled_script_still_stops_at_its_deadline_and_still_decides() {
    let e = PolicyEngine::new(Limits {
        max_operations: u64::MAX,
        timeout: Duration::from_millis(20),
        ..Limits::default()
    });
    let looping = e
        .compile("loop.rhai", "fn route(req, ctx) { loop {} }")
        .expect("compile");
    let started = Instant::now();
    let (outcome, slept) =
        tollgate_policy::run_throttled(|| e.route(&looping, &request("x"), &ctx()));
    let err = outcome.expect_err("stopped");
    assert!(slept > Duration::ZERO, "it was made to pause");
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_millis(500));
    // A script with real work across many slices still finishes, with the same answer.
    let busy = e
        .compile(
            "busy.rhai",
            "fn route(req, ctx) { let n = 0; for i in 0..20000 { n += i; } if n > 0 { \"a/x\" } else { \"b/y\" } }",
        )
        .expect("compile");
    let plain = e.route(&busy, &request("x"), &ctx()).expect("plain");
    let throttled = tollgate_policy::run_throttled(|| e.route(&busy, &request("x"), &ctx()))
        .0
        .expect("throttled");

    assert_eq!(plain, throttled);
}

#[test]
fn a_string_bomb_hits_the_size_limit() {
    let e = PolicyEngine::new(Limits {
        max_string_size: 1 << 20,
        ..Limits::default()
    });
    let script = e
        .compile(
            "bomb.rhai",
            "fn route(req, ctx) { let s = \"xx\"; loop { s += s; } }",
        )
        .expect("compile");
    let started = Instant::now();
    let err = e
        .route(&script, &request("x"), &ctx())
        .expect_err("stopped");
    assert_eq!(err.kind, ErrorKind::Limit, "{err}");
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[test]
fn invalid_decisions_say_what_was_expected() {
    let e = engine();
    for (src, needle) in [
        ("fn route(req, ctx) { 42 }", "expected a target string"),
        (
            "fn route(req, ctx) { #{ targetz: [\"a/x\"] } }",
            "unknown field `targetz`",
        ),
        (
            "fn route(req, ctx) { #{ targets: [] } }",
            "at least one target",
        ),
        (
            "fn route(req, ctx) { #{ targets: \"a/x\", cache: \"maybe\" } }",
            "\"default\" or \"bypass\"",
        ),
    ] {
        let script = e.compile("d.rhai", src).expect("compile");
        let err = e.route(&script, &request("x"), &ctx()).expect_err(src);
        assert_eq!(err.kind, ErrorKind::InvalidDecision);
        assert!(err.message.contains(needle), "{src}: {err}");
    }
}

#[test]
fn on_request_allows_denies_and_modifies() {
    let e = engine();
    let script = e
        .compile(
            "r.rhai",
            r#"fn on_request(req, ctx) {
                if req.last_user_text == "deny" { return deny(451, "not here"); }
                if req.last_user_text == "trim" { return #{ keep_last_turns: 1, max_tokens: 50, model: "cheap", tags: ["trimmed"] }; }
                "allow"
            }"#,
        )
        .expect("compile");
    assert_eq!(
        e.on_request(&script, &request("ok"), &ctx()),
        Ok(RequestVerdict::Allow)
    );
    assert_eq!(
        e.on_request(&script, &request("deny"), &ctx()),
        Ok(RequestVerdict::Deny {
            status: 451,
            message: "not here".into()
        })
    );
    let Ok(RequestVerdict::Modify(m)) = e.on_request(&script, &request("trim"), &ctx()) else {
        panic!("expected a modification");
    };
    assert_eq!(
        (m.keep_last_turns, m.max_tokens, m.model.as_deref()),
        (Some(1), Some(50), Some("cheap"))
    );
    assert_eq!(m.tags, vec!["trimmed".to_owned()]);
}

#[test]
fn on_response_scores_and_escalates() {
    let e = engine();
    let script = e
        .compile(
            "s.rhai",
            r#"fn on_response(req, resp, ctx) {
                if resp.finish_reason == "length" { return "escalate"; }
                if contains_any(resp.text, ["I'm not sure", "I cannot"]) { return 0.2; }
                "accept"
            }"#,
        )
        .expect("compile");
    let resp = |text: &str, finish: &str| ResponseView {
        text: text.into(),
        finish_reason: finish.into(),
        ..ResponseView::default()
    };
    assert_eq!(
        e.on_response(&script, &request("q"), &resp("Paris.", "stop"), &ctx()),
        Ok(ResponseVerdict::Accept)
    );
    assert_eq!(
        e.on_response(&script, &request("q"), &resp("Par", "length"), &ctx()),
        Ok(ResponseVerdict::Escalate)
    );
    assert_eq!(
        e.on_response(
            &script,
            &request("q"),
            &resp("I'm not sure.", "stop"),
            &ctx()
        ),
        Ok(ResponseVerdict::Score(0.2))
    );
}

#[test]
fn estimate_cost_uses_prices() {
    let e = engine();
    let mut data = ContextData::default();
    Arc::make_mut(&mut data.prices).insert(
        "a/x".into(),
        tollgate_policy::Price {
            input_per_1m: 2.0,
            output_per_1m: 8.0,
        },
    );
    let script = e
        .compile("c.rhai", "fn route(req, ctx) { if ctx.estimate_cost(\"a/x\", 1000000, 500000) != 6.0 { throw \"cost\"; } \"a/x\" }")
        .expect("compile");
    assert!(
        e.route(&script, &request("x"), &ContextView(Arc::new(data)))
            .is_ok()
    );
}

/// Every example policy's fixture file passes (`tollgate policy test policies/` runs the same).
#[test]
fn example_policies_pass_their_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let files = fixture::find(&dir).expect("policies dir");
    assert!(files.len() >= 5, "{files:?}");
    let e = engine();
    let failures: Vec<String> = files
        .iter()
        .flat_map(|f| fixture::run_file(&e, f))
        .filter_map(|r| r.failure.map(|f| format!("{}: {f}", r.name)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
