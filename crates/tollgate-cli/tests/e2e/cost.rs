//! Every answer is priced from the provider's usage: complete answers carry
//! `x-tollgate-cost-usd`, and streams are priced too, whether or not the client asked for usage.

use crate::harness::{Gateway, chat, mock, mock_provider};
use serde_json::Value;
use tollgate_types::{Price, Usage, Usd};

/// Model `m` on one mock target, priced at $1 / $2 per 1M input / output tokens, with cached
/// input at $0.25.
fn priced(m: &tollgate_mock::MockHandle, headers: &str) -> String {
    format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n\
         [prices.\"a/mock\"]\ninput_per_1m = 1.0\noutput_per_1m = 2.0\ncached_input_per_1m = 0.25\n",
        mock_provider("a", &m.base_url(), headers)
    )
}

fn price() -> Price {
    Price::per_million(1.0, 2.0, Some(0.25), None)
}

/// The gateway's spend gauge for model `m`, in dollars.
async fn spend(gw: &Gateway) -> f64 {
    let text = gw.metrics().await;
    text.lines()
        .find(|l| l.starts_with("tollgate_cost_usd_total{") && l.contains("model=\"m\""))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().expect("number"))
}

/// Polls until the spend gauge reaches `want` (requests are recorded just after the response).
async fn spend_reaches(gw: &Gateway, want: f64) -> f64 {
    let mut seen = 0.0;
    for _ in 0..40 {
        seen = spend(gw).await;
        if (seen - want).abs() < 1e-12 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_answer_carries_its_cost_cached_tokens_included() {
    let m = mock().await;
    let gw = Gateway::start(&priced(&m, "\"x-mock-cached-tokens\" = \"3\"")).await;
    let resp = gw.chat("m", "what does a token cost?").await;
    assert_eq!(resp.status(), 200);
    let header = resp
        .headers()
        .get("x-tollgate-cost-usd")
        .expect("cost header")
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    let usage = Usage::from_openai(&body["usage"]).expect("usage");
    assert_eq!(usage.cached_input_tokens, 3);
    let want = price().cost(&usage);
    assert!(want > Usd::ZERO);
    assert_eq!(header, want.to_string());
    assert!((spend_reaches(&gw, want.dollars()).await - want.dollars()).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_is_priced_even_when_the_client_did_not_ask_for_usage() {
    let m = mock().await;
    let gw = Gateway::start(&priced(&m, "")).await;
    // The same request, complete: what its usage costs.
    let complete: Value = gw
        .chat("m", "tell me a story")
        .await
        .json()
        .await
        .expect("json");
    let cost_of_one = price().cost(&Usage::from_openai(&complete["usage"]).expect("usage"));
    assert_eq!(
        spend_reaches(&gw, cost_of_one.dollars()).await,
        cost_of_one.dollars()
    );
    // Streamed, without `stream_options`: the client sees no usage chunk...
    let mut body = chat("m", "tell me a story");
    body["stream"] = true.into();
    let text = gw
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(text.contains("data: [DONE]"), "{text}");
    for event in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if event != "[DONE]" {
            let v: Value = serde_json::from_str(event).expect("chunk");
            assert!(
                !v["choices"].as_array().is_some_and(Vec::is_empty),
                "usage-only chunk reached a client that did not ask: {event}"
            );
        }
    }
    // ...the provider was asked for it...
    let log: Value = reqwest::get(format!("http://{}/mock/requests", m.addr))
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    let last = log["requests"]
        .as_array()
        .and_then(|r| r.last())
        .expect("a request");
    assert_eq!(last["body"]["stream_options"]["include_usage"], true);
    // ...and the stream costs exactly what the complete answer did.
    let two = cost_of_one.saturating_add(cost_of_one).dollars();
    assert!((spend_reaches(&gw, two).await - two).abs() < 1e-12);
}

/// A prompt over a configured long-context threshold is priced at that tier, on every token.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_prompt_is_priced_at_the_long_context_tier() {
    let m = mock().await;
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n\
         [prices.\"a/mock\"]\ninput_per_1m = 1.0\noutput_per_1m = 2.0\n\
         [prices.\"a/mock\".long_context]\nabove_input_tokens = 20\ninput_per_1m = 3.0\noutput_per_1m = 5.0\n",
        mock_provider("a", &m.base_url(), "")
    ))
    .await;
    let tier = Price::per_million(1.0, 2.0, None, None).with_long_context(
        tollgate_types::LongContextPrice::per_million(20, 3.0, 5.0, None, None),
    );
    for (words, long) in [(3, false), (60, true)] {
        let prompt = vec!["token"; words].join(" ");
        let resp = gw.chat("m", &prompt).await;
        assert_eq!(resp.status(), 200);
        let header: f64 = resp.headers()["x-tollgate-cost-usd"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        let body: Value = resp.json().await.expect("json");
        let usage = Usage::from_openai(&body["usage"]).expect("usage");
        assert_eq!(usage.input_tokens > 20, long, "{usage:?}");
        let want = tier.cost(&usage);
        assert_eq!(Usd::from_dollars(header), want, "{words} words");
        let base = Price::per_million(1.0, 2.0, None, None).cost(&usage);
        assert_eq!(want > base, long);
    }
}
