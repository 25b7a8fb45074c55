use crate::harness::{Gateway, chat, mock_provider};
use tollgate_mock::{MockConfig, spawn};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_attempts_and_tokens() {
    let m = spawn("127.0.0.1:0", MockConfig::default())
        .await
        .expect("mock");
    let gw = Gateway::start(&format!(
        "{}\n[models.m]\ntargets = [{{ provider = \"a\", model = \"x\" }}]\n",
        mock_provider("a", &m.base_url(), "")
    ))
    .await;
    for _ in 0..3 {
        let r = gw
            .post("/v1/chat/completions")
            .json(&chat("m", "hi"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }
    let _ = gw
        .post("/v1/chat/completions")
        .json(&chat("zzz-unknown", "hi"))
        .send()
        .await
        .expect("send");
    // Metrics are recorded in Pingora's logging phase, just after the response is written, so
    // the client can see a response before its request is counted (and a later request's
    // count can land first): poll briefly for every request to land.
    let want = [
        "tollgate_requests_total{model=\"unknown\",provider=\"none\",status=\"404\"} 1",
        "tollgate_requests_total{model=\"m\",provider=\"a\",status=\"200\"} 3",
    ];
    let mut text = String::new();
    for _ in 0..40 {
        text = gw.metrics().await;
        if want.iter().all(|w| text.contains(w)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("tollgate_requests_total{model=\"m\",provider=\"a\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "tollgate_requests_total{model=\"unknown\",provider=\"none\",status=\"404\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("tollgate_upstream_attempts_total{provider=\"a\",outcome=\"ok\"} 3"),
        "{text}"
    );
    assert!(text.contains("gen_ai_client_token_usage_bucket"), "{text}");
    assert!(text.contains("gen_ai_token_type=\"output\""), "{text}");
    assert!(
        text.contains("gen_ai_client_operation_duration_seconds_count"),
        "{text}"
    );
    assert!(
        !text.contains("zzz-unknown"),
        "unknown aliases are not labels"
    );
    let health = reqwest::get(format!("{}/health/readiness", gw.admin_url))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}
