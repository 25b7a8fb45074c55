//! Cascades in a running gateway: a confident cheap answer is kept, an unsure one escalates,
//! a schema failure escalates, streams are re-emitted or streamed live, judges are paid for,
//! and the ledger keeps every tier's cost and the baseline the savings are measured against,
//! checked against a hand calculation from the mock's usage and the configured prices.

use crate::harness::{Gateway, ask_mock, mock, mock_provider, mock_received};
use crate::keys::{ADMIN_KEY, admin_server};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tollgate_types::{Price, Usage, Usd};

/// Cheap tiers priced $1 / $2 per 1M tokens, the strong tier $10 / $30.
fn cheap_price() -> Price {
    Price::per_million(1.0, 2.0, None, None)
}

fn strong_price() -> Price {
    Price::per_million(10.0, 30.0, None, None)
}

/// Providers `sure` (confidence 0.95), `unsure` (0.2), `offschema` (sure, but ignores
/// schemas) and `strong`; one cascade model per cheap provider, escalating to `strong`.
fn config(m: &tollgate_mock::MockHandle, data: &std::path::Path, extra: &str) -> String {
    let url = m.base_url();
    let mut out = format!("[spend]\ndata_dir = \"{}\"\n\n", data.display());
    for (name, headers) in [
        ("sure", "\"x-mock-confidence\" = \"0.95\""),
        ("unsure", "\"x-mock-confidence\" = \"0.2\""),
        (
            "offschema",
            "\"x-mock-confidence\" = \"0.95\", \"x-mock-off-schema\" = \"1\"",
        ),
        ("strong", ""),
    ] {
        out.push_str(&mock_provider(name, &url, headers));
        out.push('\n');
    }
    for cheap in ["sure", "unsure", "offschema"] {
        out.push_str(&format!(
            "[prices.\"{cheap}/small\"]\ninput_per_1m = 1.0\noutput_per_1m = 2.0\n\n\
             [models.{cheap}.cascade]\n\
             [[models.{cheap}.cascade.tiers]]\ntargets = [\"{cheap}/small\"]\nthreshold = 0.6\n\
             scorers = [{{ kind = \"logprobs\" }}, {{ kind = \"json_schema\" }}]\n\
             [[models.{cheap}.cascade.tiers]]\ntargets = [\"strong/big\"]\n\n"
        ));
    }
    out.push_str("[prices.\"strong/big\"]\ninput_per_1m = 10.0\noutput_per_1m = 30.0\n");
    out.push_str(extra);
    out
}

fn ask(model: &str, content: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// The usage the mock reports for `body` sent to `model` (what the gateway was charged).
async fn usage_of(m: &tollgate_mock::MockHandle, mut body: Value, model: &str) -> Usage {
    body["model"] = json!(model);
    body.as_object_mut().map(|o| o.remove("stream"));
    body.as_object_mut().map(|o| o.remove("stream_options"));
    let answer = ask_mock(m, &body).await;
    let u = &answer["usage"];
    Usage {
        input_tokens: u["prompt_tokens"].as_u64().expect("prompt tokens"),
        output_tokens: u["completion_tokens"].as_u64().expect("completion tokens"),
        ..Usage::default()
    }
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn usd(v: &Value) -> Usd {
    Usd::from_dollars(v.as_str().expect("usd string").parse().expect("number"))
}

#[tokio::test(flavor = "multi_thread")]
async fn confident_answers_stay_cheap_and_unsure_ones_escalate_with_both_tiers_charged() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("dir");
    let gw = Gateway::start_full(&admin_server(), &config(&m, data.path(), ""), &[]).await;

    // Confident: the cheap answer is the client's, without the logprobs asked on its behalf.
    let body = ask("sure", "Name a colour.", false);
    let resp = gw.ask(&body).await;
    assert_eq!(resp.status(), 200);
    let cascade = header(&resp, "x-tollgate-cascade");
    assert!(cascade.starts_with("tier=1/2 score=0.9"), "{cascade}");
    assert!(cascade.ends_with("escalated=false"), "{cascade}");
    assert_eq!(header(&resp, "x-tollgate-model"), "small");
    let sure_id = header(&resp, "x-request-id");
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["choices"][0]["logprobs"], Value::Null);
    let seen = mock_received(&m).await;
    assert_eq!(seen.len(), 1, "one tier asked");
    assert_eq!(
        seen[0]["logprobs"], true,
        "the cheap tier is asked for logprobs"
    );

    // Unsure: escalated, and the strong tier's answer is the client's.
    let body = ask("unsure", "Name a colour.", false);
    let resp = gw.ask(&body).await;
    assert_eq!(resp.status(), 200);
    let cascade = header(&resp, "x-tollgate-cascade");
    assert!(cascade.starts_with("tier=2/2 score=0."), "{cascade}");
    assert!(cascade.ends_with("escalated=true"), "{cascade}");
    let score: f64 = cascade["tier=2/2 score=".len()..]
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("score");
    assert!(
        (0.15..0.25).contains(&score),
        "the unsure model's confidence: {cascade}"
    );
    assert_eq!(header(&resp, "x-tollgate-model"), "big");
    let unsure_id = header(&resp, "x-request-id");
    let total_header = usd(&json!(header(&resp, "x-tollgate-cost-usd")));
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(answer["model"], "big");

    // The hand calculation: the mock's usage for each tier's request, at the configured prices.
    let mut cheap_req = ask("x", "Name a colour.", false);
    cheap_req["logprobs"] = json!(true);
    let cheap_usage = usage_of(&m, cheap_req, "small").await;
    let strong_usage = usage_of(&m, ask("x", "Name a colour.", false), "big").await;
    let cheap_cost = cheap_price().cost(&cheap_usage);
    let strong_cost = strong_price().cost(&strong_usage);
    let strong_for_cheap_usage = strong_price().cost(&cheap_usage);

    let row = gw.ledger_row(ADMIN_KEY, &sure_id).await;
    assert_eq!(usd(&row["cost_usd"]), cheap_cost, "{row}");
    assert_eq!(usd(&row["baseline_usd"]), strong_for_cheap_usage, "{row}");
    assert_eq!(row["cascade"][0]["decision"], "accept", "{row}");

    let row = gw.ledger_row(ADMIN_KEY, &unsure_id).await;
    assert_eq!(
        usd(&row["cost_usd"]),
        cheap_cost.saturating_add(strong_cost),
        "{row}"
    );
    assert_eq!(total_header, cheap_cost.saturating_add(strong_cost));
    assert_eq!(usd(&row["baseline_usd"]), strong_cost, "{row}");
    let steps = row["cascade"].as_array().expect("tiers");
    assert_eq!(steps.len(), 2, "{row}");
    assert_eq!(steps[0]["decision"], "escalate");
    assert_eq!(usd(&steps[0]["cost_usd"]), cheap_cost);
    assert_eq!(steps[1]["decision"], "final");
    assert_eq!(usd(&steps[1]["cost_usd"]), strong_cost);
    assert_eq!(
        row["input_tokens"].as_u64(),
        Some(cheap_usage.input_tokens + strong_usage.input_tokens)
    );

    // Savings per model: the confident request saved the strong price less the cheap one; the
    // escalated one lost its cheap attempt (a negative saving, as it should be).
    let report: Value = reqwest::Client::new()
        .get(format!("{}/admin/spend?by=model", gw.admin_url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("json");
    let saved = |model: &str| -> String {
        report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["group"] == model)
            .unwrap_or_else(|| panic!("no row for {model}: {report}"))["saved_usd"]
            .as_str()
            .expect("saved")
            .to_owned()
    };
    assert_eq!(
        saved("sure"),
        strong_for_cheap_usage
            .saturating_sub(cheap_cost)
            .to_string()
    );
    assert_eq!(saved("unsure"), format!("-{cheap_cost}"));

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(
            "tollgate_cascade_decisions_total{model=\"unsure\",tier=\"1\",decision=\"escalate\",scorer=\"logprobs\"} 1"
        ),
        "{metrics}"
    );
}

/// The SSE events of a streamed answer, `[DONE]` as a string.
async fn events(resp: reqwest::Response) -> Vec<Value> {
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
    }
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| json!(e)))
        .collect()
}

fn streamed_text(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_are_re_emitted_when_accepted_and_live_when_escalated() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("dir");
    let direct = "[models.direct.cascade]\nstream_first_tier = false\n\
        [[models.direct.cascade.tiers]]\ntargets = [\"sure/small\"]\nthreshold = 0.5\n\
        scorers = [{ kind = \"logprobs\" }]\n\
        [[models.direct.cascade.tiers]]\ntargets = [\"strong/big\"]\n";
    let gw = Gateway::start_full(&admin_server(), &config(&m, data.path(), direct), &[]).await;
    let plain = ask_mock(&m, &ask("small", "Stream me a colour.", false)).await;
    let want = plain["choices"][0]["message"]["content"]
        .as_str()
        .expect("text")
        .to_owned();

    let resp = gw.ask(&ask("sure", "Stream me a colour.", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=1/2"));
    let evs = events(resp).await;
    assert_eq!(evs.last(), Some(&json!("[DONE]")));
    assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        streamed_text(&evs),
        want,
        "the re-emitted stream says the answer"
    );
    let usage = &evs[evs.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert!(
        usage["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );

    let before = mock_received(&m).await.len();
    let resp = gw.ask(&ask("unsure", "Stream me a colour.", true)).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=2/2"));
    let evs = events(resp).await;
    assert_eq!(evs.last(), Some(&json!("[DONE]")));
    let strong = ask_mock(&m, &ask("big", "Stream me a colour.", false)).await;
    assert_eq!(
        streamed_text(&evs),
        strong["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
    );
    let seen = mock_received(&m).await;
    let tiers: Vec<(Value, Value)> = seen[before..before + 2]
        .iter()
        .map(|b| (b["model"].clone(), b["stream"].clone()))
        .collect();
    assert_eq!(
        tiers,
        [(json!("small"), Value::Null), (json!("big"), json!(true))],
        "the cheap tier is asked whole, the strong one streams live"
    );

    // `stream_first_tier = false`: a stream goes straight to the last tier, live; a complete
    // answer still goes through the cascade.
    let before = mock_received(&m).await.len();
    let resp = gw.ask(&ask("direct", "Stream me a colour.", true)).await;
    assert_eq!(
        header(&resp, "x-tollgate-cascade"),
        "tier=2/2 score=- escalated=false"
    );
    assert_eq!(events(resp).await.last(), Some(&json!("[DONE]")));
    let seen = mock_received(&m).await;
    assert_eq!(seen.len(), before + 1);
    assert_eq!(seen[before]["model"], "big");
    let resp = gw.ask(&ask("direct", "Stream me a colour.", false)).await;
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=1/2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_failures_escalate_and_judges_and_self_reports_score() {
    let m = mock().await;
    let data = tempfile::tempdir().expect("dir");
    let extra = format!(
        "{}\n{}\n[models.judge]\ntargets = [{{ provider = \"strong\", model = \"judge\" }}]\n\
         [prices.\"strong/judge\"]\ninput_per_1m = 1.0\noutput_per_1m = 1.0\n\
         [prices.\"right/small\"]\ninput_per_1m = 1.0\noutput_per_1m = 2.0\n\
         [prices.\"wrong/small\"]\ninput_per_1m = 1.0\noutput_per_1m = 2.0\n\
         [models.judged.cascade]\n\
         [[models.judged.cascade.tiers]]\ntargets = [\"right/small\"]\nthreshold = 0.5\n\
         scorers = [{{ kind = \"judge\", model = \"judge\" }}]\n\
         [[models.judged.cascade.tiers]]\ntargets = [\"strong/big\"]\n\
         [models.judged-wrong.cascade]\n\
         [[models.judged-wrong.cascade.tiers]]\ntargets = [\"wrong/small\"]\nthreshold = 0.5\n\
         scorers = [{{ kind = \"judge\", model = \"judge\" }}]\n\
         [[models.judged-wrong.cascade.tiers]]\ntargets = [\"strong/big\"]\n\
         [models.rated-sure.cascade]\n\
         [[models.rated-sure.cascade.tiers]]\ntargets = [\"sure/small\"]\nthreshold = 0.5\n\
         scorers = [{{ kind = \"self_report\" }}]\n\
         [[models.rated-sure.cascade.tiers]]\ntargets = [\"strong/big\"]\n\
         [models.fallback.cascade]\n\
         [[models.fallback.cascade.tiers]]\ntargets = [\"unsure/small\"]\nthreshold = 0.5\n\
         scorers = [{{ kind = \"logprobs\" }}]\n\
         [[models.fallback.cascade.tiers]]\ntargets = [\"down/big\"]\n\
         [models.rated.cascade]\n\
         [[models.rated.cascade.tiers]]\ntargets = [\"unsure/small\"]\nthreshold = 0.5\n\
         scorers = [{{ kind = \"self_report\" }}, {{ kind = \"refusal\" }}]\n\
         [[models.rated.cascade.tiers]]\ntargets = [\"strong/big\"]\n",
        mock_provider("right", &m.base_url(), "\"x-mock-accuracy\" = \"1\""),
        mock_provider("wrong", &m.base_url(), "\"x-mock-accuracy\" = \"0\""),
    ) + &mock_provider("down", &m.base_url(), "\"x-mock-status\" = \"503\"");
    let gw = Gateway::start_full(&admin_server(), &config(&m, data.path(), &extra), &[]).await;

    // A schema the cheap model ignores: escalated although its logprobs are confident.
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"], "additionalProperties": false});
    let mut body = ask("offschema", "Which city?", false);
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "city", "schema": schema}});
    let resp = gw.ask(&body).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=2/2 score=0.00"));
    let answer: Value = resp.json().await.expect("json");
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    let parsed: Value = serde_json::from_str(text).expect("the strong answer is JSON");
    assert!(parsed["city"].is_string(), "{parsed}");

    // A judge that finds the answer right keeps it; one that finds it wrong escalates. Either
    // way the request pays for the judge too.
    let resp = gw.chat("judged", "What is 2 + 2?").await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=1/2 score=0.95"));
    let id = header(&resp, "x-request-id");
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "The answer is 4."
    );
    let row = gw.ledger_row(ADMIN_KEY, &id).await;
    let attempts: Vec<&str> = row["attempts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["model"].as_str()).collect())
        .unwrap_or_default();
    let models_seen: Vec<Value> = mock_received(&m)
        .await
        .iter()
        .rev()
        .take(2)
        .map(|b| b["model"].clone())
        .collect();
    assert_eq!(
        models_seen,
        [json!("judge"), json!("small")],
        "{attempts:?}"
    );
    let cost = usd(&row["cost_usd"]);
    let cheap_only =
        cheap_price().cost(&usage_of(&m, ask("x", "What is 2 + 2?", false), "small").await);
    assert!(
        cost > cheap_only,
        "the judge's call is charged: {cost} vs {cheap_only}"
    );

    let resp = gw.chat("judged-wrong", "What is 2 + 2?").await;
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=2/2 score=0.05"));

    // A confident self-rating keeps the answer, without the tag the model was asked for.
    let resp = gw.chat("rated-sure", "Name a colour.").await;
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=1/2 score=0.95"));
    let answer: Value = resp.json().await.expect("json");
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("text");
    assert!(
        text.starts_with("Mock answer:") && !text.contains("confidence"),
        "{text}"
    );

    // The last tier down: the earlier tier's unsure answer is served rather than an error.
    let resp = gw.chat("fallback", "Name a colour.").await;
    assert_eq!(resp.status(), 200);
    let cascade = header(&resp, "x-tollgate-cascade");
    assert!(cascade.starts_with("tier=1/2 score=0."), "{cascade}");
    assert!(
        cascade.ends_with("escalated=false fallback=true"),
        "{cascade}"
    );
    assert_eq!(header(&resp, "x-tollgate-model"), "small");

    // A self-reported confidence of 0.2 escalates; the tag never reaches the client.
    let resp = gw.chat("rated", "Name a colour.").await;
    assert!(header(&resp, "x-tollgate-cascade").starts_with("tier=2/2 score=0.20"));
    let asked = mock_received(&m).await;
    let cheap_ask = &asked[asked.len() - 2];
    let last = cheap_ask["messages"]
        .as_array()
        .expect("messages")
        .last()
        .cloned();
    assert!(
        last.is_some_and(|msg| msg["role"] == "system"
            && msg["content"]
                .as_str()
                .is_some_and(|t| t.contains("<confidence>"))),
        "the cheap tier is asked to rate itself: {cheap_ask}"
    );
}
