//! Rate limits: requests and tokens per minute, per key, user or model, with OpenAI's
//! `x-ratelimit-*` headers and a 429 with `retry-after` once a bucket is empty.

use crate::harness::{Gateway, ask_mock, mock, mock_provider};
use serde_json::{Value, json};
use std::time::Instant;

fn limited(m: &tollgate_mock::MockHandle, rules: &str) -> String {
    format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"mock\" }}]\n{rules}",
        mock_provider("a", &m.base_url(), "")
    )
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().expect("ascii").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_per_minute_per_key_then_429_with_retry_after() {
    let m = mock().await;
    let gw = Gateway::start(&limited(&m, "[[rate_limits]]\nper = \"key\"\nrpm = 5\n")).await;
    for left in (0..5).rev() {
        let resp = gw.chat("m", "hi").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "x-ratelimit-limit-requests").as_deref(),
            Some("5")
        );
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests"),
            Some(left.to_string())
        );
    }
    let resp = gw.chat("m", "hi").await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = header(&resp, "retry-after")
        .expect("retry-after")
        .parse()
        .expect("secs");
    assert!(
        (1..=12).contains(&retry),
        "one request comes back every 12 s: {retry}"
    );
    assert_eq!(header(&resp, "x-should-retry").as_deref(), Some("true"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_has_a_bucket_of_their_own() {
    let m = mock().await;
    let gw = Gateway::start(&limited(&m, "[[rate_limits]]\nper = \"user\"\nrpm = 2\n")).await;
    let ask = |user: &'static str| {
        gw.post("/v1/chat/completions")
            .header("x-tollgate-user", user)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(ask("ana").await.expect("send").status(), 200);
    assert_eq!(ask("ana").await.expect("send").status(), 200);
    assert_eq!(ask("ana").await.expect("send").status(), 429);
    assert_eq!(ask("bo").await.expect("send").status(), 200);
    // A request naming no user is not limited by a per-user rule.
    assert_eq!(gw.chat("m", "hi").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_per_minute_count_what_the_provider_reported() {
    let m = mock().await;
    let tpm = 400u64;
    let gw = Gateway::start(&limited(&m, &format!("[[rate_limits]]\ntpm = {tpm}\n"))).await;
    let started = Instant::now();
    let (mut admitted, mut largest, mut refused) = (0u64, 0u64, false);
    for _ in 0..50 {
        // Small bodies, long answers: the estimate at admission is far below what is used.
        let resp = gw
            .post("/v1/chat/completions")
            .json(&json!({"model": "m", "max_tokens": 120,
                          "messages": [{"role": "user", "content": "write at length"}]}))
            .send()
            .await
            .expect("send");
        if resp.status() == 429 {
            refused = true;
            break;
        }
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        let used = body["usage"]["total_tokens"].as_u64().expect("usage");
        admitted += used;
        largest = largest.max(used);
        // Requests settle just after their response: let this one land.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert!(refused, "the token limit was reached");
    // What the provider reported is what was counted: admitted tokens stay within the limit,
    // plus the last request's overrun and what refilled meanwhile.
    let refill = (started.elapsed().as_secs_f64() * tpm as f64 / 60.0).ceil() as u64;
    assert!(
        admitted <= tpm + largest + refill,
        "{admitted} tokens admitted under a {tpm}/min limit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_larger_than_the_token_limit_is_refused_for_good() {
    let m = mock().await;
    let gw = Gateway::start(&limited(&m, "[[rate_limits]]\ntpm = 10\n")).await;
    let resp = gw.chat("m", &"a long prompt ".repeat(20)).await;
    assert_eq!(resp.status(), 400, "retrying could never help");
    assert_eq!(header(&resp, "x-should-retry").as_deref(), Some("false"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "request_too_large_for_rate_limit");
}

/// Two gateways sharing Redis share one bucket: 6 requests a minute in all, not per gateway,
/// with the tokens the provider reported settled into the shared token bucket.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL is set"]
async fn gateways_sharing_redis_share_one_bucket() {
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL").expect("TOLLGATE_TEST_REDIS_URL");
    let m = mock().await;
    let prefix = format!(
        "tollgate-test-limits-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
    );
    let body = format!(
        "[shared]\nredis_url = \"{url}\"\nprefix = \"{prefix}\"\n\n{}",
        limited(
            &m,
            "[[rate_limits]]\nper = \"key\"\nrpm = 6\ntpm = 100000\n"
        )
    );
    let a = Gateway::start(&body).await;
    let b = Gateway::start(&body).await;
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    let mut tokens_left = Vec::new();
    let started = Instant::now();
    for i in 0..8 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let resp = gw.chat("m", "hi").await;
        statuses.push(resp.status().as_u16());
        remaining.push(header(&resp, "x-ratelimit-remaining-requests"));
        tokens_left.push(header(&resp, "x-ratelimit-remaining-tokens"));
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
    let counted: Vec<String> = remaining[..6]
        .iter()
        .map(|r| r.clone().expect("header"))
        .collect();
    assert_eq!(
        counted,
        ["5", "4", "3", "2", "1", "0"],
        "one count across both gateways"
    );
    // Complete answers settle before they are sent: the sixth request's bucket holds what
    // the provider reported for the first five, and its own estimate (a quarter of its
    // body's bytes).
    let v = ask_mock(
        &m,
        &json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let reported = v["usage"]["total_tokens"].as_u64().expect("tokens");
    let left: u64 = tokens_left[5]
        .as_deref()
        .expect("header")
        .parse()
        .expect("number");
    // The bucket refills continuously (1,667 tokens a second): allow for the time the
    // requests took, measured (on a loaded machine it can be more than an answer's tokens).
    let refill = (started.elapsed().as_secs_f64() * 100_000.0 / 60.0).ceil() as u64;
    assert!(
        left <= 100_000 - 5 * reported + refill && left + 64 >= 100_000 - 5 * reported,
        "left {left}, each answer {reported} tokens, refilled up to {refill}"
    );
}
