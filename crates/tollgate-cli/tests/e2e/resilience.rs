//! Retries, deadlines and circuit breakers through the real binary. The chaos scenarios with the
//! official SDK live in `tests/e2e/test_chaos.py`.

use crate::harness::{Gateway, chat, mock, mock_provider};
use std::time::{Duration, Instant};

/// Scripts faults on an in-test mock through its control endpoint.
async fn script(m: &tollgate_mock::MockHandle, steps: serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/mock/faults", m.addr))
        .json(&serde_json::json!({ "steps": steps }))
        .send()
        .await
        .expect("script");
    assert!(resp.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_503_is_retried_on_the_same_target() {
    let (a, b) = (mock().await, mock().await);
    script(&a, serde_json::json!([{"times": 1, "status": 503}])).await;
    let gw = Gateway::start(&format!(
        "{}\n{}\n[models.m]\nretries = 1\ntargets = [{{ provider = \"a\", model = \"m1\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider("a", &a.base_url(), ""),
        mock_provider("b", &b.base_url(), "")
    ))
    .await;
    let resp = gw.chat("m", "hi").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-tollgate-provider"],
        "a",
        "the retry succeeded"
    );
    assert_eq!(resp.headers()["x-tollgate-attempts"], "2");
    assert_eq!((a.stats.requests(), b.stats.requests()), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_can_tighten_the_request_deadline() {
    let (a, b) = (mock().await, mock().await);
    let gw = Gateway::start(&format!(
        "{}\n{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"m1\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider("a", &a.base_url(), "\"x-mock-hang\" = \"1\""),
        mock_provider("b", &b.base_url(), "\"x-mock-hang\" = \"1\"")
    ))
    .await;
    let started = Instant::now();
    let resp = gw
        .post("/v1/chat/completions")
        .header("x-tollgate-timeout-ms", "300")
        .json(&chat("m", "hi"))
        .send()
        .await
        .expect("send");
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    // The providers' own first-byte timeouts are 2 s each: only the header's 300 ms explains this.
    assert!(
        elapsed < Duration::from_millis(1500),
        "answered after {elapsed:?}"
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "upstream_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_circuits_are_skipped_and_answered_at_once() {
    let a = mock().await;
    let gw = Gateway::start(&format!(
        "[resilience]\nretries = 0\n[resilience.breaker]\nconsecutive_failures = 2\ncooldown_ms = 60000\n\
         {}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"m1\" }}]\n",
        mock_provider("a", &a.base_url(), "\"x-mock-status\" = \"503\"")
    ))
    .await;
    for _ in 0..2 {
        let resp = gw.chat("m", "hi").await;
        assert_eq!(resp.status(), 502);
    }
    let resp = gw.chat("m", "hi").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-tollgate-attempts"], "0");
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "circuit_open");
    assert_eq!(
        a.stats.requests(),
        2,
        "the open circuit kept the third request away"
    );
    let targets: serde_json::Value = reqwest::get(format!("{}/admin/targets", gw.admin_url))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(targets["a/m1"]["circuit"], "open");
    assert_eq!(targets["a/m1"]["last_error"], "HTTP 503");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tollgate_circuit_transitions_total{target=\"a/m1\",state=\"open\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_says_how_many_attempts_it_took() {
    let gw = Gateway::start("").await;
    let resp = gw.chat("nope", "hi").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tollgate-attempts"], "0");
}

/// Two gateways sharing one Redis agree on an outage: the circuit one of them opens keeps the
/// other's traffic away from the failing target too.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis: tests/run.sh runs it when TOLLGATE_TEST_REDIS_URL is set"]
async fn gateways_sharing_redis_agree_on_an_open_circuit() {
    let url = std::env::var("TOLLGATE_TEST_REDIS_URL").expect("TOLLGATE_TEST_REDIS_URL");
    let (a, b) = (mock().await, mock().await);
    let prefix = format!(
        "tollgate-e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let config = format!(
        "[shared]\nredis_url = \"{url}\"\nprefix = \"{prefix}\"\n\
         [resilience]\nretries = 0\n[resilience.breaker]\nconsecutive_failures = 2\ncooldown_ms = 60000\n\
         {}\n{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"m1\" }}, {{ provider = \"b\", model = \"m2\" }}]\n",
        mock_provider("a", &a.base_url(), "\"x-mock-status\" = \"503\""),
        mock_provider("b", &b.base_url(), "")
    );
    let (gw1, gw2) = (Gateway::start(&config).await, Gateway::start(&config).await);
    // Both subscribe in the background after start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        let resp = gw1.chat("m", "hi").await;
        assert_eq!(resp.headers()["x-tollgate-provider"], "b");
    }
    assert_eq!(a.stats.requests(), 2);
    let circuit = |gw: &Gateway| {
        let url = format!("{}/admin/targets", gw.admin_url);
        async move {
            let v: serde_json::Value = reqwest::get(url)
                .await
                .expect("admin")
                .json()
                .await
                .expect("json");
            v["a/m1"]["circuit"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while circuit(&gw2).await != "open" {
        assert!(
            Instant::now() < deadline,
            "the second gateway never heard of the open circuit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let resp = gw2.chat("m", "hi").await;
        assert_eq!(resp.headers()["x-tollgate-provider"], "b");
        assert_eq!(
            resp.headers()["x-tollgate-attempts"],
            "1",
            "the failing target was skipped"
        );
    }
    assert_eq!(
        a.stats.requests(),
        2,
        "no request from the second gateway reached it"
    );
}
